"""Self-supervised label augmentation, SLA (Lee, Hwang & Shin, ICML 2020): ``fit`` any image method on joint labels
(class x transformation) and predict by aggregating the joint logits over the transformations.

The training split is augmented with the 4 rotations of every image (0, 90, 180, 270 degrees); the image of class
``c`` rotated by ``m`` quarter turns gets the joint label ``c * 4 + m`` and the chosen method trains a ``4C``-way
classifier on them (the method itself is unchanged: it sees a ``4C``-class dataset). At test time an image ``x`` is
classified by the paper's aggregated inference (SLA+AG, its eq. 5):

    s_c(x) = 1/4 * sum_m z_(c, m)(rot_m(x)),    P(c | x) = softmax_c(s(x))

where ``z`` are the joint logits. The paper's single head (SLA+SD: a C-way head distilled from the aggregated
predictions, one forward pass at test time) is ``head="single"``: a C-way linear head trained through the one loop
on the fitted network's frozen features of the unrotated training images, against the aggregated predictions
(KL divergence, temperature 1) plus the labels' cross-entropy, as the paper's self-distillation loss does; trained
after the joint fit rather than jointly with it (our simplification). The paper's own code:
github.com/hankook/SLA (``train.py``: ``joint`` labels ``y * 4 + k`` and the aggregated ``sum_k`` of the joint
logits at ``[k::4]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import GROUPS, QUALITY, Dataset, train_and_test
from ..errors import TransferlabError

#: the transformations of ``--label-augmentation``: name -> how many (rotations by quarter turns)
AUGMENTATIONS = {"rotation": 4}


def rotated_dataset(ds: Dataset, m: int = 4) -> Dataset:
    """``ds`` with every image in its ``m`` quarter-turn rotations (the unrotated first), labels ``c * m + k``
    (class ``c``, ``k`` quarter turns counter-clockwise, as ``np.rot90`` and ``torch.rot90`` turn them)."""
    if ds.modality != "image":
        raise TransferlabError(f"label augmentation by rotation takes images; {ds.name} holds {ds.modality} data")
    x = _image_array(ds)
    if x.shape[1] != x.shape[2]:
        raise TransferlabError(f"{ds.name}: rotation needs square images, these are {x.shape[1]}x{x.shape[2]}")
    xs = np.concatenate([np.rot90(x, k, axes=(1, 2)) for k in range(m)])
    ys = np.concatenate([ds.labels * m + k for k in range(m)])
    names = tuple(f"{c}@{90 * k}" for c in ds.class_names for k in range(m))
    meta: dict = {"source": f"{ds.meta.get('source', ds.name)} x {m} rotations"}
    if ds.meta.get(QUALITY) is not None:  # a quality column (petal): every rotation keeps its image's value
        meta[QUALITY] = np.tile(np.asarray(ds.meta[QUALITY]), m)
    # an image's rotations are one group: fit's validation split takes all of them or none (else the rotations of
    # a training image would score the best epoch); groups the data has already (e.g. one per video) are kept
    own = ds.meta.get(GROUPS)
    meta[GROUPS] = np.tile(np.arange(len(ds)) if own is None else np.asarray(own), m)
    return Dataset(f"{ds.name}-rot{m}", "image", np.ascontiguousarray(xs), ys, names, ds.split, meta)


def _image_array(ds: Dataset) -> np.ndarray:
    if isinstance(ds.items, np.ndarray):
        return ds.items
    from PIL import Image

    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in ds.items]
    if len({a.shape for a in arrays}) > 1:
        raise TransferlabError(f"{ds.name}: images of several sizes; resize them to one size for label augmentation")
    return np.stack(arrays)


@dataclass
class SLAResult:
    """An SLA fit: the joint fit's result, the model (:class:`~transferlab.models.Aggregated`; with
    ``head="single"`` it holds the single head and predicts with it), the single head's network, and the metrics
    (aggregated test accuracy, the joint head's accuracy on unrotated images, the single head's)."""

    fit: Any
    model: Any
    metrics: dict[str, Any]
    single: Any = None


def fit_label_augmented(dataset: Any, model: str, method: str, *, augmentation: str = "rotation",
                        head: str = "aggregate", test: Any = None, batch_size: int = 32, seed: int = 0,
                        **fit_kwargs: Any) -> SLAResult:
    """``fit`` with self-supervised label augmentation (see the module): ``method`` trains on the joint labels of
    ``dataset``'s training split; the test split is scored with the aggregated prediction (``test_accuracy``), the
    joint head on the unrotated image alone (``joint_identity_accuracy``) and, with ``head="single"``, the
    self-distilled single head (``single_head_accuracy``). ``fit_kwargs`` go to :func:`~transferlab.fit.fit`;
    with ``out`` the model is written there (the ``sla`` model structure: ``load``/``predict`` give the aggregated
    C-way prediction, or with ``head="single"`` the single head's, its weights saved beside the joint network's;
    ``model.head = "aggregate"`` on the loaded model switches back) with ``metrics.json``, for methods that keep
    the network's architecture (``head``, ``linear_probe``, ``bitfit``, ``partial``, ``finetune``, peft methods,
    merged)."""
    from ..models import Aggregated
    from ._api import fit

    if augmentation not in AUGMENTATIONS:
        raise TransferlabError(f"unknown label augmentation {augmentation!r}; known: {', '.join(AUGMENTATIONS)}")
    if head not in ("aggregate", "single"):
        raise TransferlabError(f"head must be 'aggregate' or 'single', got {head!r}")
    out, overwrite = fit_kwargs.pop("out", None), bool(fit_kwargs.pop("overwrite", False))
    m = AUGMENTATIONS[augmentation]
    train, test_ds = train_and_test(dataset, test)
    joint = fit(rotated_dataset(train, m), model, method, batch_size=batch_size, seed=seed, **fit_kwargs)
    net = joint.model
    if hasattr(net, "merge_and_unload"):  # peft: the adapted network as one
        net = net.merge_and_unload()
    agg = Aggregated(net.eval(), m)
    metrics = {"label_augmentation": augmentation, "transforms": m, "method": method, "model": model,
               "n_train": len(train), "joint_fit": {k: v for k, v in joint.metrics.items() if k != "history"}}
    single = None
    if head == "single":
        single = distil_single_head(net, agg, train, joint.metrics, batch_size=batch_size, seed=seed)
    if test_ds is not None:
        metrics.update(_test_metrics(net, agg, single, test_ds, joint.metrics, batch_size, m))
    if single is not None:  # the model predicts with its single head (one pass); model.head = "aggregate" switches
        agg = Aggregated(net, m, single.head, "single")
    if out is not None:
        _write(out, overwrite, agg, train, joint, metrics, model, method)
    return SLAResult(joint, agg, metrics, single)


def _test_metrics(net: Any, agg: Any, single: Any, test_ds: Dataset, joint_metrics: dict[str, Any],
                  batch_size: int, m: int) -> dict[str, Any]:
    """Aggregated, joint-at-identity and single-head accuracies on ``test_ds``."""
    from ..models import ImageTensors, interpolation_of, predict_logits

    data = ImageTensors(test_ds, joint_metrics["image_size"], tuple(joint_metrics["mean"]),
                        tuple(joint_metrics["std"]), interpolation=interpolation_of(joint_metrics))
    y = test_ds.labels
    out = {"test_accuracy": float(np.mean(predict_logits(agg, data, batch_size).argmax(1) == y)),
           "joint_identity_accuracy": float(np.mean(predict_logits(net, data, batch_size)[:, 0::m].argmax(1) == y)),
           "n_test": len(test_ds)}
    if single is not None:
        out["single_head_accuracy"] = float(np.mean(predict_logits(single, data, batch_size).argmax(1) == y))
    return out


def _torch() -> Any:
    import torch

    return torch


class SingleHead(_torch().nn.Module):
    """SLA+SD's single head: a C-way linear layer on ``net``'s frozen pooled features (timm's pre-logits)."""

    def __init__(self, net: Any, num_features: int, num_classes: int) -> None:
        torch = _torch()
        super().__init__()
        self.net = net
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.head = torch.nn.Linear(num_features, num_classes)

    def forward(self, x: Any) -> Any:
        self.net.eval()
        with _torch().no_grad():
            f = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        return self.head(f)


def distil_single_head(net: Any, agg: Any, train: Dataset, joint_metrics: dict[str, Any], *, batch_size: int,
                       seed: int, epochs: int = 10, lr: float = 1e-2) -> SingleHead:
    """The self-distilled single head (SLA+SD, see the module), trained through the one loop: the loss of a
    training image ``i`` is ``KL(P_agg(i) || softmax(head(i))) + CE(head(i), y_i)``, ``P_agg`` the aggregated
    prediction (computed once). ``agg=None``: the one-hot labels are the teacher (the loss is then ``2 * CE``), a
    head refitted on the true labels by the same recipe, on any timm network's frozen features: the control that
    separates the distillation from the refitting."""
    import torch

    from ..models import ImageTensors, interpolation_of, predict_logits
    from ..train import Supervised, TrainConfig, seed_everything
    from ..train import train as train_loop

    data = ImageTensors(train, joint_metrics["image_size"], tuple(joint_metrics["mean"]), tuple(joint_metrics["std"]),
                        interpolation=interpolation_of(joint_metrics))
    labels = torch.as_tensor(train.labels)
    if agg is None:
        teacher = torch.nn.functional.one_hot(labels.long(), train.num_classes).float()
    else:
        teacher = torch.softmax(torch.from_numpy(predict_logits(agg, data, batch_size)), 1)
    seed_everything(seed)
    with torch.no_grad():
        net.eval()
        probe = data[0][0][None].to(next(net.parameters()).device)  # the fitted network stays on its device
        dim = net.forward_head(net.forward_features(probe), pre_logits=True).shape[1]
    single = SingleHead(net, int(dim), train.num_classes)

    def loss(logits: Any, idx: Any) -> Any:  # the batch's "labels" are the examples' indices (see _Indexed)
        logp = torch.log_softmax(logits.float(), 1)
        t = teacher.to(logits.device)[idx]
        return torch.nn.functional.kl_div(logp, t, reduction="batchmean") + \
            torch.nn.functional.nll_loss(logp, labels.to(logits.device)[idx])

    train_loop({"model": single}, Supervised(params=list(single.head.parameters()), loss=loss,
                                        options={"sla": "single_head"}),
          _Indexed(data), TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed))
    return single.eval()


class _Indexed:
    """``data``'s inputs with each example's index as its label (the single head's loss looks its targets up)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.data[i][0], i


def _write(out: Any, overwrite: bool, agg: Any, train: Dataset, joint: Any, metrics: dict[str, Any], model: str,
           method: str) -> None:
    """The aggregated model as a model directory (card structure ``sla``) with ``metrics.json``; refused for a
    network whose modules the recorded architecture cannot rebuild (a method's own structure)."""
    import torch

    from ..models import RunOutput, architecture_of, interpolation_of, net_from_architecture, sla_structure

    arch = architecture_of(agg.net)
    single = None if agg.single is None else agg.single.in_features
    structure = sla_structure(agg.m, train.num_classes, single, agg.head)
    with torch.device("meta"):
        plain = net_from_architecture(arch, structure["joint_classes"])
    expected = {f"net.{k}" for k in plain.state_dict()} | {f"single.{k}" for k in ("weight", "bias") if single}
    if expected != set(agg.state_dict()):
        raise TransferlabError(f"{method} adds modules to the network: an SLA fit with it cannot be saved yet (use "
                               "head, linear_probe, bitfit, partial, finetune or a peft method, or drop --out)")
    j = joint.metrics
    with RunOutput(out, model=model, method=f"{method}+sla", what="fit", overwrite=overwrite) as output:
        card = output.card(modality="image", architecture=arch, num_classes=train.num_classes,
                           class_names=list(train.class_names), image_size=j["image_size"], mean=j["mean"],
                           std=j["std"], interpolation=interpolation_of(j), weights="state_dict",
                           structure=structure,
                           options={"label_augmentation": metrics["label_augmentation"]})
        output.write(agg, card, metrics)
