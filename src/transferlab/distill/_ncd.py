"""Novel-class discovery with class-relation distillation (``distill --novel-classes``): labelled examples of the
known classes and unlabelled examples of new ones; a model learns to cluster the new ones.

As UNO (Fini et al., ICCV 2021) and the class-relation KD paper (Gu et al., ICCV 2023; kleinzcy/Cr-KD-NCD @
0f55bea, rKD.py) do it, on the one training loop, in two runs:

1. supervised pretraining: the student's body with a cosine head over the known classes, cross-entropy on the
   labelled examples (logits / τ, τ = 0.1);
2. discovery: a second cosine head with one output per novel class beside the known one; each example is seen in two
   augmented views; labelled examples' targets are their one-hot known class, unlabelled examples' are the Sinkhorn
   assignment of their novel-head logits (balanced clusters); each view predicts the other's targets (swapped
   prediction). With ``kd_weight`` > 0 the frozen model of step 1 (the known-class model) gives each unlabelled
   example a distribution over the known classes, and the new model keeps it (:func:`relation_kd`, weighted per
   example).

The clusters are scored on the test split's novel-class examples by clustering accuracy (Hungarian)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, load_dataset
from ..errors import TransferlabError
from ..train import Objective, StepContext

log = logging.getLogger(__name__)
TAU = 0.1  # the cosine heads' temperature (UNO, Cr-KD-NCD: 0.1)


def _net(body: Any, dim: int, n_known: int, n_novel: int) -> Any:
    import torch
    import torch.nn.functional as F  # noqa: N812

    class Discoverer(torch.nn.Module):
        """A body and two cosine heads (known, novel): [B, n_known + n_novel] cosines of the normalised features
        with the normalised prototypes."""

        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.known = torch.nn.Linear(dim, n_known, bias=False)
            self.novel = torch.nn.Linear(dim, n_novel, bias=False)

        def forward(self, x: Any) -> Any:
            f = F.normalize(self.body(x).flatten(1).float(), dim=1)
            return torch.cat([F.linear(f, F.normalize(self.known.weight, dim=1)),
                              F.linear(f, F.normalize(self.novel.weight, dim=1))], dim=1)

    return Discoverer()


class _Known(Objective):
    """Step 1: cross-entropy over the known head on the labelled examples."""

    select = ("none", True)  # no selection: the last epoch's weights

    def __init__(self, n_known: int) -> None:
        self.n_known = n_known

    def step(self, batch: Any, modules: Mapping[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Any]]:
        import torch.nn.functional as F  # noqa: N812

        z, y = modules["model"](batch["x"])[:, :self.n_known] / TAU, batch["y"]
        return F.cross_entropy(z, y), {"accuracy": (int((z.argmax(1) == y).sum()), len(y))}

    def config(self) -> dict[str, Any]:
        return {"objective": "ncd_known", "n_known": self.n_known}


class _Discovery(Objective):
    """Step 2: swapped prediction with Sinkhorn targets, plus ``kd_weight`` × the class-relation term."""

    select = ("none", True)

    def __init__(self, n_known: int, kd_weight: float, kd_temperature: float, epsilon: float) -> None:
        self.n_known, self.kd_weight, self.kd_temperature, self.epsilon = n_known, kd_weight, kd_temperature, epsilon

    def step(self, batch: Any, modules: Mapping[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Any]]:
        import torch
        import torch.nn.functional as F  # noqa: N812

        from ._ncd_losses import relation_kd, sinkhorn, swapped_prediction

        y, nk = batch["y"], self.n_known
        views = [modules["model"](batch["x"]), modules["model"](batch["x2"])]
        lab = y >= 0
        targets = []
        for z in views:
            t = torch.zeros_like(z)
            t[lab, :nk] = F.one_hot(y[lab], nk).to(t.dtype)
            if bool((~lab).any()):
                t[~lab, nk:] = sinkhorn(z[~lab, nk:].detach(), self.epsilon)
            targets.append(t)
        loss = swapped_prediction(views, targets, TAU)
        logs: dict[str, Any] = {"swapped": loss.detach()}
        if self.kd_weight > 0 and bool((~lab).any()):
            with torch.no_grad():  # the known-class model on each view, as the reference (rKD.py: its large crops)
                old = torch.stack([modules["known_model"](batch[k])[~lab, :nk] for k in ("x", "x2")]) / TAU
            kd, mass = relation_kd(torch.stack([z[~lab] for z in views]) / TAU, old, nk, self.kd_temperature)
            loss = loss + self.kd_weight * kd
            p = torch.softmax(old / self.kd_temperature, dim=-1)  # the targets' entropy over log n_known: 1 = flat
            flat = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean()) / float(np.log(nk)) if nk > 1 else 0.0
            logs.update(relation_kd=kd.detach(), relation_weight=mass, relation_target_entropy=flat)
        return loss, logs

    def config(self) -> dict[str, Any]:
        return {"objective": "ncd_discovery", "kd_weight": self.kd_weight, "kd_temperature": self.kd_temperature,
                "epsilon": self.epsilon}


class _TwoViews:
    """Each example twice, independently augmented (``x``, ``x2``), with its label (-1: unlabelled)."""

    def __init__(self, views: Any) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> dict[str, Any]:
        a, b = self.views[i], self.views[i]
        return {"x": a["x"], "x2": b["x"], "y": a["y"]}


def split_novel(ds: Dataset, novel: Sequence[str]) -> tuple[Dataset, Dataset, list[str], list[str]]:
    """(the known classes' examples, relabelled 0..k−1; the novel classes' examples, labelled 0..m−1 in the order of
    ``novel``; the known names; the novel names) of ``ds``."""
    names = [str(c) for c in ds.class_names]
    novel = [str(c) for c in novel]
    unknown = [c for c in novel if c not in names]
    if unknown or not novel or len(set(novel)) == len(names):
        raise TransferlabError(f"--novel-classes must name some, not all, of {ds.name}'s classes "
                               f"({', '.join(names)}); got {', '.join(novel) or 'none'}")
    known = [c for c in names if c not in novel]

    def part(keep: list[str]) -> Dataset:
        index = {names.index(c): i for i, c in enumerate(keep)}
        idx = np.flatnonzero(np.isin(ds.labels, list(index)))
        sub = ds.subset(idx)
        labels = np.array([index[int(v)] for v in np.asarray(ds.labels)[idx]], dtype=np.int64)
        return Dataset(f"{ds.name}-{'-'.join(keep)}", ds.modality, sub.items, labels, tuple(keep), ds.split)

    return part(known), part(novel), known, novel


@dataclass
class DiscoveryResult:
    """The discovery model (body + known and novel heads) and its metrics."""

    model: Any
    metrics: dict[str, Any]


def discover(data: Dataset | str, novel_classes: Sequence[str], student: str, *, kd_weight: float = 0.1,
             kd_temperature: float = 4.0, epsilon: float = 0.05, known_epochs: int = 10, epochs: int = 10,
             lr: float = 1e-3, batch_size: int = 64, image_size: int | None = None, limit: int | None = None,
             seed: int = 0, out: str | Path | None = None, progress: bool = False) -> DiscoveryResult:
    """Novel-class discovery on ``data`` (its train split: the ``novel_classes``' labels are hidden; its test split:
    the evidence): ``student`` (a model reference) pretrained on the known classes for ``known_epochs``, then trained
    to cluster the novel ones for ``epochs`` with the class-relation term at ``kd_weight`` (0: plain UNO-style
    discovery). Metrics: clustering accuracy on the test split's novel classes, accuracy on its known classes;
    ``out``: a directory for ``metrics.json`` (the model is returned, not saved)."""
    for name, v in (("kd_weight", kd_weight), ("kd_temperature", kd_temperature), ("epsilon", epsilon)):
        if not (np.isfinite(v) and v >= 0) or (name != "kd_weight" and v == 0):
            raise TransferlabError(f"{name} must be a finite number {'>= 0' if name == 'kd_weight' else '> 0'}, "
                                   f"got {v!r}")
    train_ds = load_dataset(data, "train") if not isinstance(data, Dataset) else data
    test_ds = load_dataset(data, "test") if not isinstance(data, Dataset) else None
    if limit and limit < len(train_ds):
        train_ds = train_ds.stratified_sample(limit, seed=0)
    known, novel, known_names, novel_names = split_novel(train_ds, novel_classes)
    net, feed = _build(student, train_ds, len(known_names), len(novel_names), image_size, seed)
    hist1, hist2 = _train_both(net, feed, known, novel, _Settings(kd_weight, kd_temperature, epsilon, known_epochs,
                                                                  epochs, lr, batch_size, seed, progress))
    metrics: dict[str, Any] = {"known_classes": known_names, "novel_classes": novel_names, "kd_weight": kd_weight,
                               "kd_temperature": kd_temperature, "epsilon": epsilon, "n_known": len(known),
                               "n_unlabelled": len(novel), "seed": seed, "known_history": hist1, "history": hist2}
    if test_ds is not None:
        metrics.update(_evaluate(net, feed, test_ds, novel_classes))
    if out is not None:
        from .._io import write_json_atomic

        Path(out).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out) / "metrics.json", metrics)
    return DiscoveryResult(net, metrics)


@dataclass(frozen=True)
class _Settings:
    kd_weight: float
    kd_temperature: float
    epsilon: float
    known_epochs: int
    epochs: int
    lr: float
    batch_size: int
    seed: int
    progress: bool


def _build(student: str, ds: Dataset, n_known: int, n_novel: int, image_size: int | None,
           seed: int) -> tuple[Any, tuple[Any, ...]]:
    """The discovery network on ``student``'s pretrained body, and its input feed."""
    import torch

    from ..models import build, resolve
    from ..train import seed_everything

    seed_everything(seed)
    backbone = resolve(str(student))
    if backbone.modality != "image" or ds.modality != "image":
        raise TransferlabError("novel-class discovery takes images and an image model")
    built = build(backbone, 0)
    size = int(image_size or backbone.default_size(ds))
    with torch.no_grad():
        dim = int(built.net.eval()(torch.zeros(1, 3, size, size)).flatten(1).shape[1])
    return _net(built.net, dim, n_known, n_novel), ("image", size, tuple(built.mean), tuple(built.std))


def _train_both(net: Any, feed: tuple[Any, ...], known: Dataset, novel: Dataset,
                s: _Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import copy

    from ..train import TrainConfig, train
    from ._inputs import Views

    cfg = TrainConfig(epochs=s.known_epochs, lr=s.lr, batch_size=s.batch_size, seed=s.seed)
    net.novel.weight.requires_grad_(False)  # step 1 trains the body and the known head
    r1 = train({"model": net}, _Known(len(known.class_names)), Views([(known, True)], [feed], augment=True), cfg,
               progress=s.progress)
    net.novel.weight.requires_grad_(True)
    old = copy.deepcopy(net).eval()
    for p in old.parameters():
        p.requires_grad_(False)
    data = _TwoViews(Views([(known, True), (novel, False)], [feed], augment=True))
    cfg = cfg.model_copy(update={"epochs": s.epochs, "seed": s.seed + 1})
    objective = _Discovery(len(known.class_names), s.kd_weight, s.kd_temperature, s.epsilon)
    r2 = train({"model": net, "known_model": old}, objective, data, cfg, progress=s.progress)
    net.eval()
    return r1.history, r2.history


def _evaluate(net: Any, feed: tuple[Any, ...], test: Dataset, novel_classes: Sequence[str]) -> dict[str, Any]:
    """Clustering accuracy of the novel head's argmax on the test split's novel-class examples; accuracy of the
    known head on its known-class examples."""
    from ..models import infer
    from ._inputs import Views
    from ._ncd_losses import cluster_accuracy

    known, novel, _, _ = split_novel(test, novel_classes)
    nk = len(known.class_names)
    out: dict[str, Any] = {"n_test_novel": len(novel), "n_test_known": len(known)}
    for part, name in ((novel, "novel"), (known, "known")):
        views = Views([(part, True)], [feed])
        z = infer(net, _Pairs(views), 128).outputs
        if name == "novel":
            out["novel_cluster_accuracy"] = cluster_accuracy(part.labels, z[:, nk:].argmax(1))
        else:
            out["known_accuracy"] = float(np.mean(z[:, :nk].argmax(1) == np.asarray(part.labels)))
    return out


class _Pairs:
    """``(x, y)`` pairs of a Views dataset (what ``infer`` reads)."""

    def __init__(self, views: Any) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        item = self.views[i]
        return item["x"], item["y"]
