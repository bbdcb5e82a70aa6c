"""``fit``: adapt a pretrained model to a labelled dataset with one of the registered methods; ``load`` it back."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_json_atomic
from .._version import __version__
from ..data import Dataset, load_dataset
from ..errors import TransferlabError
from ._data import ImageTensors, split_validation
from ._methods import head_module_name
from ._registry import METHODS

log = logging.getLogger(__name__)
FORMAT = 1
DEFAULT_MAX_LENGTH = 128  # tokens; the built-in text set's median review is 27 tokens, 1.5 % exceed 128


def list_methods(pattern: str | None = None) -> list[str]:
    """Names of the registered adaptation methods."""
    return METHODS.list(pattern)


@dataclass
class FitResult:
    model: Any
    metrics: dict[str, Any]
    out_dir: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def architecture_of(model: Any) -> dict[str, Any]:
    """The record that identifies (and for text models rebuilds) a model's architecture."""
    arch = getattr(model, "architecture", None)  # TextClassifier (also through a peft wrapper)
    if isinstance(arch, dict) and arch:
        return arch
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    name = cfg.get("architecture")
    if not name:
        raise TransferlabError(f"cannot tell the architecture of {type(model).__name__}; fit supports timm and "
                               "transformers models")
    kwargs = getattr(model, "transferlab_timm_kwargs", None)  # models built with non-default shapes (small zoo ViT)
    return {"library": "timm", "name": name, **({"kwargs": dict(kwargs)} if kwargs else {})}


def architecture_key(arch: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree for weights to move between two models (timm: the name; transformers: the shapes)."""
    if arch.get("library") == "transformers":
        c = arch.get("config", {})
        return ("transformers", arch.get("name"), *(c.get(k) for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")))
    return (arch.get("library"), arch.get("name"), json.dumps(arch.get("kwargs", {}), sort_keys=True))


@dataclass
class _Built:
    """A model ready to adapt and how to feed it: images (size, mean, std) or text (tokenizer, max_length)."""

    net: Any
    modality: str
    image_size: int | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    tokenizer: Any = None
    max_length: int | None = None

    def tensors(self, ds: Dataset, augment: bool = False) -> Any:
        if self.modality == "text":
            from ._text import TextTensors

            return TextTensors(ds, self.tokenizer, self.max_length or 256)
        return ImageTensors(ds, self.image_size or 224, self.mean, self.std, augment=augment)

    def preprocessing(self) -> dict[str, Any]:
        if self.modality == "text":
            return {"max_length": self.max_length}
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}


def _resolve(ref: str, trust_pickle: bool) -> Any:
    from ..zoo import resolve_model

    return resolve_model(ref, trust_pickle=trust_pickle)


def _build(backbone: Any, num_classes: int) -> _Built:
    from ..zoo._backbone import TorchImageBackbone

    if isinstance(backbone, TorchImageBackbone):
        model = backbone.model
        model.reset_classifier(num_classes)
        return _Built(model, "image", backbone.native_size, tuple(backbone.mean), tuple(backbone.std))
    if backbone.modality == "text":
        from ._text import build_text_classifier

        net, tok = build_text_classifier(backbone, num_classes)
        return _Built(net, "text", tokenizer=tok, max_length=net.architecture["max_length"])
    raise TransferlabError(f"{backbone.ref} cannot be fine-tuned: fit needs a torch model (timm:, hf:, st: or a "
                           "builtin torch model); baselines only extract features")


def _check_modality(backbone: Any, ds: Dataset) -> None:
    if backbone.modality != ds.modality:
        raise TransferlabError(f"{backbone.ref} takes {backbone.modality} input but {ds.name} holds {ds.modality} "
                               f"data: choose a {ds.modality} model (transferlab zoo list)")


def _check_out(out: Path, identity: dict[str, Any], overwrite: bool) -> None:
    cfg = out / "config.json"
    if not out.exists() or not any(out.iterdir()):
        return
    if overwrite:
        shutil.rmtree(out)
        return
    if cfg.is_file():
        try:
            old = json.loads(cfg.read_text())
        except ValueError:
            old = {}
        same = all(old.get(k) == v for k, v in identity.items())
        if not same:
            raise TransferlabError(
                f"{out} already holds a different model ({old.get('model')}, {old.get('method')}); choose another "
                "--out or pass --overwrite")
        raise TransferlabError(f"{out} already holds this fit; pass --overwrite to redo it")
    if not (out / "checkpoints").is_dir():
        raise TransferlabError(f"{out} is not empty and holds no transferlab fit; choose another --out or pass "
                               "--overwrite")


def fit(
    dataset: Dataset | str | Path,
    model: str,
    method: str,
    *,
    test: Dataset | str | Path | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    epochs: int = 5,
    lr: float | None = None,
    batch_size: int = 32,
    image_size: int | None = None,
    max_length: int | None = None,
    val_fraction: float = 0.1,
    budget_minutes: float | None = None,
    seed: int = 0,
    progress: bool = False,
    trust_pickle: bool = False,
    init: str | Path | None = None,
    **options: Any,
) -> FitResult:
    """Adapt ``model`` (a model reference) to ``dataset`` (its train split) with ``method``.

    A stratified ``val_fraction`` of the training split is held out for early stopping and model selection; ``test``
    (default: the dataset's test split when ``dataset`` is a reference) gives ``test_accuracy``. With ``out``, the
    adapted model (``model.safetensors`` + ``config.json``) and ``metrics.json`` are written there, and training
    checkpoints each epoch so a killed run resumes. Images are resized to ``image_size`` (default: the model's native
    size, 128 px for images of <= 64 px); texts are truncated to ``max_length`` tokens (default 128).
    """
    import torch

    from ..train import TrainConfig, train
    from ..train.loop import evaluate, seed_everything

    METHODS.get(method)  # unknown: lists the known ones
    if method == "sparse" and not 0 < float(options.get("density", 0.01)) <= 1:
        raise TransferlabError(f"sparse: density must lie in (0, 1], got {options['density']}")
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, "train")
    if test is None and not isinstance(dataset, Dataset):
        test = load_dataset(dataset, "test")
    test_ds = load_dataset(test, "test") if isinstance(test, (str, Path)) else test
    backbone = _resolve(model, trust_pickle)
    _check_modality(backbone, ds)
    if backbone.modality == "text":
        if max_length is not None and not 8 <= max_length <= 512:
            raise TransferlabError(f"max_length must lie in [8, 512] tokens, got {max_length}")
        backbone.max_length = int(max_length or DEFAULT_MAX_LENGTH)  # also keys the linear probe's feature cache
    c = ds.num_classes
    identity = {"model": model, "method": method}
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _check_out(out_dir, identity, overwrite)
    seed_everything(seed)
    built = _build(backbone, c)
    net = built.net
    if built.modality == "image":
        built.image_size = int(image_size or backbone.default_size(ds))  # shared with rank
    if init is not None:
        _init_from_(net, Path(init), trust_pickle)
    size = built.image_size
    train_ds, val_ds = split_validation(ds, val_fraction, seed)
    train_data = built.tensors(train_ds, augment=True)
    val_data = built.tensors(val_ds) if val_ds is not None else None
    cfg = TrainConfig(epochs=epochs, lr=lr or METHODS.meta(method).get("default_lr") or 1e-3, batch_size=batch_size,
                      seed=seed, budget_seconds=budget_minutes * 60 if budget_minutes else None)
    ckdir = out_dir / "checkpoints" if out_dir is not None else None
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    sparse_diff = None
    val_acc = None
    if method == "linear_probe":
        trainable = _linear_probe(net, backbone, train_ds, size, seed)
    elif method == "sparse":
        from ._sparse import sparse_fit_

        net, trainable, history, val_acc, sparse_diff = sparse_fit_(net, train_data, val_data, cfg, c, progress,
                                                                    ckdir, **options)
    else:
        extra = {"image_size": size or 64} if METHODS.meta(method).get("needs_image_size") else {}
        try:
            prep = METHODS.get(method)(net, **extra, **options)
        except TypeError as exc:  # an option the method does not take
            raise TransferlabError(f"{method}: {exc}") from None
        net, trainable = prep.model, prep.params
        result = train(net, train_data, val_data, cfg, num_classes=c, params=trainable,
                       regularizer=prep.regularizer, progress=progress, checkpoint_dir=ckdir, lr_scales=prep.lr_scales,
                       freeze_norm_stats=prep.freeze_norm_stats)
        history, val_acc = result.history, result.best_val_accuracy
    train_seconds = time.perf_counter() - t0
    dev = next(net.parameters()).device
    eval_cfg = TrainConfig(batch_size=batch_size)
    if val_acc is None and val_data is not None:
        val_acc = evaluate(net, val_data, eval_cfg, dev, torch.nn.CrossEntropyLoss())[1]
    test_data = built.tensors(test_ds) if test_ds is not None else None
    y_pred = _predict_labels(net, test_data, batch_size) if test_data is not None else None
    test_acc = float(np.mean(y_pred == test_ds.labels)) if test_data is not None else None
    metrics = {
        **({"sparse_nnz": sparse_diff.nnz(), "sparse_of": sparse_diff.size()} if sparse_diff is not None else {}),
        "method": method, "model": model, "dataset": ds.name, "test_accuracy": test_acc, "val_accuracy": val_acc,
        # sparse: the entries that may change (the mask) plus the head, not the whole tensors that hold them
        "trainable_params": int(sparse_diff.nnz() + sum(p.numel() for p in net.get_classifier().parameters())
                                if sparse_diff is not None else sum(p.numel() for p in trainable)),
        "total_params": int(sum(p.numel() for p in net.parameters())),
        "train_seconds": train_seconds, "epochs": len(history), **built.preprocessing(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "history": history,
    }
    if out_dir is not None:
        from ._scalearn import structure

        config = {**identity, "transferlab_version": __version__, "format": FORMAT, "modality": built.modality,
                  "architecture": architecture_of(net), "num_classes": c, "class_names": list(ds.class_names),
                  **built.preprocessing(), "options": options, "structure": structure(net),
                  "train": {"epochs": epochs, "lr": cfg.lr, "batch_size": batch_size, "seed": seed,
                            "val_fraction": val_fraction},
                  "init": str(init) if init is not None else None}
        _save(out_dir, net, config, metrics, built.tokenizer)
        if sparse_diff is not None:
            sparse_diff.save(out_dir / "sparse_diff.safetensors")
        if test_data is not None:
            _write_report(out_dir, net, config, metrics, test_data, test_ds.labels, y_pred)
    return FitResult(net, metrics, out_dir, history)


def predict_logits(net: Any, data: Any, batch_size: int) -> np.ndarray:
    """Logits [N, C] in the dataset's order (variable-length inputs run in length-sorted batches)."""
    import torch

    net.eval()
    n = len(data)
    lengths = getattr(data, "lengths", None)
    order = np.argsort(-np.asarray(lengths), kind="stable") if lengths is not None else np.arange(n)
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    dev = next(net.parameters()).device
    out: np.ndarray | None = None
    with torch.inference_mode():
        for idx, (x, _) in zip(batches, torch.utils.data.DataLoader(data, batch_sampler=batches), strict=True):
            logits = net(x.to(dev)).float().cpu().numpy()
            if out is None:
                out = np.empty((n, logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    assert out is not None
    return out


def _predict_labels(net: Any, data: Any, batch_size: int) -> np.ndarray:
    return predict_logits(net, data, batch_size).argmax(1)


def _write_report(out: Path, net: Any, config: dict[str, Any], metrics: dict[str, Any], data: Any,
                  y_true: np.ndarray, y_pred: np.ndarray) -> None:
    from .._io import write_text_atomic
    from ..report import fit_report_html
    from ._cam import gradcam_panels

    if config.get("modality") == "text":
        panels, note = [], "Grad-CAM explains image models; this is a text model."
    else:
        try:
            panels, note = gradcam_panels(net, data, y_true, y_pred, config["class_names"], tuple(config["mean"]),
                                          tuple(config["std"]))
        except Exception as exc:  # the report must not fail a finished fit; say why the panel is missing
            log.warning("Grad-CAM failed: %s", exc)
            panels, note = [], f"Grad-CAM failed on this model: {exc}"
    write_text_atomic(out / "report.html", fit_report_html(metrics, config, y_true, y_pred, panels, note))


def _init_from_(net: Any, init: Path, trust_pickle: bool) -> None:
    """Load an earlier fit's weights into ``net`` in place (same architecture; head only if the shapes match)."""
    prev = load(init, trust_pickle=trust_pickle)
    cfg = prev.transferlab_config
    if architecture_key(cfg["architecture"]) != architecture_key(architecture_of(net)):
        raise TransferlabError(f"--init {init} is a {cfg['architecture']['name']} but the model to fit is a "
                               f"{architecture_of(net)['name']}: initialise from a fit of the same architecture")
    if _is_peft(cfg["method"]):
        prev = prev.merge_and_unload()
    elif adds_modules(cfg["method"]):
        raise TransferlabError(f"--init from an {cfg['method']!r} fit is not supported: its adapters are not part of "
                               "the base architecture")
    state = prev.state_dict()
    own = net.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in keep]
    head = {n for n, _ in net.get_classifier().named_parameters(prefix=head_module_name(net))}
    if any(k not in head for k in missing):
        raise TransferlabError(f"--init {init}: weights do not fit the model (first mismatch: "
                               f"{next(k for k in missing if k not in head)})")
    net.load_state_dict(keep, strict=False)


def _linear_probe(net: Any, backbone: Any, ds: Dataset, size: int, seed: int) -> list[Any]:
    """Logistic regression on cached pooled features; its weights become the model's head."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from ..zoo import FeatureCache, extract_features

    feats = extract_features(backbone, ds, image_size=size, cache=FeatureCache()).features.astype(np.float64)
    if feats.shape[1] != net.get_classifier().in_features:
        raise TransferlabError(f"{backbone.ref}: its cached features have {feats.shape[1]} dimensions but the "
                               f"classifier head takes {net.get_classifier().in_features}")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # lbfgs may stop at 1000 iterations on unscaled features: fine for a probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(feats, ds.labels)
    head = net.get_classifier()
    coef = np.zeros((ds.num_classes, feats.shape[1]))
    bias = np.full(ds.num_classes, -1e4)  # classes absent from training can never win
    if clf.coef_.shape[0] == len(clf.classes_):
        coef[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    else:  # binary: p(second) = sigmoid(w x + b) = softmax([0, w x + b])
        coef[clf.classes_[1]], bias[clf.classes_] = clf.coef_[0], [0.0, clf.intercept_[0]]
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(coef, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    for p in net.parameters():
        p.requires_grad_(False)
    return list(head.parameters())


def _is_peft(method: str) -> bool:
    return method in METHODS and bool(METHODS.meta(method).get("peft"))


def adds_modules(method: str) -> bool:
    """Whether ``method``'s saved models hold modules the base architecture lacks (adapters, ScaLearn)."""
    return method in METHODS and bool(METHODS.meta(method).get("needs_image_size"))


def pretrained(ref: str, num_classes: int = 0, *, trust_pickle: bool = False) -> Any:
    """The torch model ``fit`` starts from for ``ref``: the pretrained network with a fresh ``num_classes`` head
    (none for 0), parameter names as in the models ``fit`` saves."""
    return _build(_resolve(ref, trust_pickle), num_classes).net


def _net_from_architecture(arch: dict[str, Any], num_classes: int) -> Any:
    if arch.get("library") == "timm":
        import timm

        return timm.create_model(arch["name"], pretrained=False, num_classes=num_classes, **arch.get("kwargs", {}))
    if arch.get("library") == "transformers":
        from ._text import text_classifier_from_architecture

        return text_classifier_from_architecture(arch, num_classes)
    raise TransferlabError(f"unsupported architecture library {arch.get('library')!r}")


def head_prefix(model_or_config: Any) -> str:
    """The dotted name of the classification head (``classifier``, ``head``, ``head.fc``...) of a model, or of the
    model a saved ``config.json`` (dict) describes (built on the meta device: no memory, no weights)."""
    if isinstance(model_or_config, dict):
        import torch

        with torch.device("meta"):
            net = _net_from_architecture(model_or_config["architecture"], int(model_or_config.get("num_classes") or 2))
        return head_module_name(net)
    return head_module_name(model_or_config)


def _save_tokenizer(out: Path, tokenizer: Any) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=out))
    try:
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(out / "tokenizer", ignore_errors=True)
        os.replace(tmp, out / "tokenizer")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _save(out: Path, net: Any, config: dict[str, Any], metrics: dict[str, Any], tokenizer: Any = None) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:  # text models: predict needs the exact tokenizer, offline
        _save_tokenizer(out, tokenizer)
    if _is_peft(config["method"]):  # peft's own format: PeftModel.from_pretrained(base, out) loads it
        net.save_pretrained(str(out))
        write_json_atomic(out / "config.json", config)
        write_json_atomic(out / "metrics.json", metrics)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".tmp", dir=out)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"transferlab_version": __version__})
        os.replace(tmp, out / "model.safetensors")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json_atomic(out / "config.json", config)
    write_json_atomic(out / "metrics.json", metrics)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def load(model_dir: str | Path, *, head: str | None = None, trust_pickle: bool = False) -> Any:
    """The adapted model saved by :func:`fit` (or ``merge``), in eval mode, ready for inference
    (``model(x) -> logits``).

    ``head``: for a merged model, the task whose classification head to use (default: the first; the config's
    ``heads`` lists them). ``model.transferlab_config`` holds the saved config (``class_names`` and ``num_classes``
    of the chosen head); text models also carry ``model.transferlab_tokenizer`` (their input is ``[B, 2, L]`` token
    ids and attention mask, or a tokenizer's dict output)."""
    from safetensors.torch import load_file

    d = Path(model_dir)
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        raise TransferlabError(f"{d} holds no readable config.json: not a transferlab model directory") from None
    peft_format = _is_peft(cfg.get("method", ""))
    if not (d / ("adapter_model.safetensors" if peft_format else "model.safetensors")).is_file():
        raise TransferlabError(f"{d} has no {'adapter_model' if peft_format else 'model'}.safetensors")
    known = {"model", "method", "transferlab_version", "format", "architecture", "num_classes", "class_names",
             "image_size", "mean", "std", "options", "train", "init", "modality", "max_length", "structure", "heads",
             "head", "merge"}
    extra = set(cfg) - known
    if extra:
        log.warning("%s: ignoring unknown config keys %s (written by transferlab %s)", d, sorted(extra),
                    cfg.get("transferlab_version"))
    heads = cfg.get("heads") or {}
    if head is not None and head not in heads:
        raise TransferlabError(f"{d} has no head {head!r}; "
                               + (f"its heads: {', '.join(heads)}" if heads else "it has one head (not a merge)"))
    arch = cfg["architecture"]
    if arch.get("library") not in ("timm", "transformers"):
        raise TransferlabError(f"{d}: unsupported architecture library {arch.get('library')!r}")
    tokenizer = None
    if arch["library"] == "transformers":
        from ._text import _load_tokenizer, _quiet_transformers

        _quiet_transformers()
        tokenizer = _load_tokenizer(str(d / "tokenizer"))
    if peft_format:
        from peft import PeftModel

        # the weights the adapters were trained on
        net = PeftModel.from_pretrained(_build(_resolve(cfg["model"], trust_pickle), cfg["num_classes"]).net, str(d))
    else:
        state = load_file(str(d / "model.safetensors"))
        if head is not None:  # swap in the chosen task's head
            h = heads[head]
            prefix = cfg.get("head") or head_prefix(cfg)
            state = {k: v for k, v in state.items() if not (k == prefix or k.startswith(prefix + "."))}
            state.update(load_file(str(d / h["file"])))
            cfg = {**cfg, "num_classes": h["num_classes"], "class_names": h["class_names"], "head": prefix,
                   "selected_head": head}
        net = _net_from_architecture(arch, cfg["num_classes"])
        method = cfg.get("method")
        if method == "scalearn":  # self-contained: the source adapters' shapes come from the saved weights
            from ._scalearn import rebuild_

            net = rebuild_(net, state, cfg.get("structure") or {})
        elif adds_modules(method):  # adapters: rebuild them before loading the weights
            net = METHODS.get(method)(net, image_size=cfg.get("image_size") or 64, **cfg.get("options", {})).model
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise TransferlabError(f"{d}: the saved weights do not fit the recorded architecture "
                                   f"({str(exc).splitlines()[0]})") from None
    net.eval()
    net.transferlab_config = cfg
    net.transferlab_tokenizer = tokenizer
    return net


def model_inputs(net: Any, ds: Dataset) -> Any:
    """A torch dataset of ``(input, label)`` for ``ds`` with a loaded model's own preprocessing."""
    return _tensors_for(net, ds)


def _tensors_for(net: Any, ds: Dataset) -> Any:
    """The saved model's preprocessing applied to ``ds``."""
    cfg = net.transferlab_config
    modality = cfg.get("modality", "image")
    if ds.modality != modality:
        raise TransferlabError(f"this model takes {modality} data; {ds.name} holds {ds.modality}")
    if modality == "text":
        from ._text import TextTensors

        return TextTensors(ds, net.transferlab_tokenizer, int(cfg.get("max_length") or 256))
    return ImageTensors(ds, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))


def predict(model_dir: str | Path, dataset: Dataset | str | Path, *, split: str = "test",
            batch_size: int = 64, head: str | None = None) -> tuple[np.ndarray, np.ndarray, Any]:
    """Class probabilities of a fitted model on a dataset split: (predicted class index [N], probabilities [N, C],
    the model's config). Preprocessing (image size and normalisation, or tokenizer) comes from the model's
    directory. ``head``: a merged model's task head (see :func:`load`)."""
    import torch

    net = load(model_dir, head=head)
    cfg = net.transferlab_config
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, split)
    logits = torch.from_numpy(predict_logits(net, _tensors_for(net, ds), batch_size))
    p = torch.softmax(logits, dim=1).numpy()
    return p.argmax(1), p, cfg


def evaluate_model(model_dir: str | Path, dataset: Dataset | str | Path, *, split: str = "test",
                   head: str | None = None) -> dict[str, Any]:
    """Accuracy and per-class precision/recall of a fitted (or merged: ``head``) model on a labelled dataset split."""
    from sklearn.metrics import precision_recall_fscore_support

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, split)
    pred, _, cfg = predict(model_dir, ds, head=head)
    names = cfg["class_names"]
    if list(ds.class_names) != list(names):
        raise TransferlabError(f"the model was trained on classes {names}; {ds.name} has {list(ds.class_names)}")
    prec, rec, f1, support = precision_recall_fscore_support(ds.labels, pred, labels=range(len(names)),
                                                             zero_division=0)
    return {"dataset": ds.name, "split": ds.split, "n": len(ds), "accuracy": float(np.mean(pred == ds.labels)),
            "per_class": {n: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
                          for n, a, b, c, d in zip(names, prec, rec, f1, support, strict=True)}}
