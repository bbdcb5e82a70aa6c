"""``adapt``: a model for a shifted, unlabelled target from a labelled source, with label-free checkpoint selection."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._registry import check_options
from .._runtime import in_runtime
from ..data import Dataset, load_dataset, split_validation
from ..errors import TransferlabError, few
from ..models import RunOutput
from ..train import on_devices
from ._methods import METHODS
from ._records import DEFAULT_LR, DomainResult, kept_checkpoint, picks_of
from ._selectors import SELECTORS

log = logging.getLogger(__name__)
VAL_FRACTION = 0.1


def list_methods() -> list[str]:
    """The domain adaptation methods (``source_only``, ``dann``, ``cdan``, ``cdan_e``, ``mcc``; source-free:
    ``shot``, ``nrc``, ``aad``)."""
    return METHODS.list()


def list_selectors() -> list[str]:
    """The label-free selectors (``transfer_score``, ``entropy``, ``im``, ``snd``, ``dev``, ``source_val``)."""
    return SELECTORS.list()


@dataclass(frozen=True)
class _Settings:
    """How an adaptation trains and selects, as the caller gave them (``lr`` None: :data:`DEFAULT_LR`)."""

    trade_off: float
    select: str
    epochs: int
    lr: float | None
    batch_size: int
    image_size: int | None
    bottleneck: int
    label_smoothing: float = 0.0
    sam: float | None = None
    weighting: str = "fixed"


WEIGHTINGS = ("fixed", "pareto")


def _check_step_options(method: str, s: _Settings, source_free: bool) -> None:
    """``sam`` (adversarial methods with source data) and ``weighting`` (methods with source data)."""
    if s.weighting not in WEIGHTINGS:
        raise TransferlabError(f"unknown weighting {s.weighting!r}; known: {', '.join(WEIGHTINGS)}")
    if s.sam is not None:
        if isinstance(s.sam, bool) or not isinstance(s.sam, (int, float)) or not 0 < s.sam < math.inf:
            raise TransferlabError(f"sam is the radius rho of sharpness-aware minimisation, a number > 0 (SDAT: "
                                   f"0.02), got {s.sam!r}")
        if not METHODS.meta(method).get("adversarial"):
            adv = [m for m in METHODS.list() if METHODS.meta(m).get("adversarial")]
            raise TransferlabError(f"sam (SDAT) is an option of the adversarial methods ({', '.join(adv)}), not "
                                   f"of {method}")
        if s.weighting != "fixed":
            raise TransferlabError("sam and weighting='pareto' each replace the step's gradient: choose one")
    if source_free and s.weighting != "fixed":
        raise TransferlabError("weighting='pareto' weighs the source, transfer and target objectives: a source-free "
                               "method has no source objective")


def source_label_smoothing(method: str, label_smoothing: float | None) -> float:
    """The source cross-entropy's label smoothing: as given, else 0.1 when the run trains a source model
    (``source_only``, SHOT's source recipe) and 0 for the adaptation methods (the TLlib references use none)."""
    if label_smoothing is None:
        return 0.1 if method == "source_only" else 0.0
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0 <= label_smoothing < 1:
        raise TransferlabError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
    return float(label_smoothing)


def _check_settings(target: Dataset, method: str, s: _Settings) -> None:
    trade_off, select, batch_size, bottleneck = s.trade_off, s.select, s.batch_size, s.bottleneck
    if method not in METHODS:
        raise TransferlabError(f"unknown domain adaptation method {method!r}; known: {', '.join(list_methods())}")
    if select not in SELECTORS:
        raise TransferlabError(f"unknown selector {select!r}; known: {', '.join(list_selectors())}")
    if not (isinstance(trade_off, (int, float)) and math.isfinite(trade_off) and trade_off > 0):
        raise TransferlabError(f"trade_off must be a finite number > 0, got {trade_off!r}")
    from ..train import check_run_arguments

    check_run_arguments(epochs=s.epochs, batch_size=batch_size, lr=s.lr, image_size=s.image_size, min_batch_size=2)
    if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1:
        raise TransferlabError(f"bottleneck must be a whole number >= 1, got {bottleneck!r}")
    if target.modality != "image":
        raise TransferlabError(f"domain adaptation takes images; {target.name} holds {target.modality} data")
    if len(target) < 2 * batch_size:
        raise TransferlabError(f"the target {target.name} has {len(target)} examples, fewer than two batches of "
                               f"{batch_size}: add target examples or lower batch_size")


def _check(source: Dataset, target: Dataset, method: str, s: _Settings) -> None:
    if source.modality != target.modality:
        raise TransferlabError(f"the source {source.name} holds {source.modality} data, the target {target.name} "
                               f"{target.modality}: both domains must be the same kind of data")
    _check_settings(target, method, s)
    if METHODS.meta(method).get("source_free"):
        raise TransferlabError(f"{method} is source-free: it adapts a trained source model on the target alone; "
                               "give source_model= (--source-model) and no source data")
    if source.modality != "image":
        raise TransferlabError(f"domain adaptation takes images; {source.name} holds {source.modality} data")
    if list(source.class_names) != list(target.class_names):
        only_s = [c for c in source.class_names if c not in target.class_names]
        only_t = [c for c in target.class_names if c not in source.class_names]
        what = (f"only the source has {few(only_s)}" if only_s else "") + ("; " if only_s and only_t else "") + \
               (f"only the target has {few(only_t)}" if only_t else "")
        raise TransferlabError(f"the source {source.name} and the target {target.name} must have the same classes in "
                               f"the same order: {what or 'the order differs'} ({len(source.class_names)} vs "
                               f"{len(target.class_names)} classes)")


@on_devices
@in_runtime
def adapt(
    source: Dataset | str | Path | Any,
    target: Dataset | str | Path | Any,
    model: str | None = None,
    method: str = "dann",
    *,
    source_model: str | Path | None = None,
    trade_off: float = 1.0,
    select: str = "guarded",
    epochs: int = 10,
    lr: float | None = None,
    batch_size: int = 32,
    image_size: int | None = None,
    bottleneck: int = 256,
    label_smoothing: float | None = None,
    sam: float | None = None,
    weighting: str = "fixed",
    target_test: Dataset | str | Path | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
    progress: bool = False,
    trust_pickle: bool = False,
    **options: Any,
) -> DomainResult:
    """Adapt ``model`` to the unlabelled ``target`` (its train split) with the labelled ``source`` (its train split)
    by ``method``; the checkpoint with the best ``select`` score (label-free) is kept.

    The network is the backbone with a bottleneck head (Linear-``bottleneck``-BN-ReLU, then the classifier); the
    backbone learns at 0.1x ``lr``. Every epoch, every selector scores the checkpoint on the un-augmented target
    examples (``metrics.json``: each score and its parts per epoch, and which epoch each would pick). Target labels are
    never used for training or selection: where the target has a labelled test split (``target_test``, default the
    reference's test split) its accuracy fills an oracle column, marked as such. With ``out``: an ordinary model
    directory (``predict``, ``evaluate`` work on it), ``metrics.json`` and ``report.html``.

    Source-free (``source_model``: a saved model directory, e.g. a ``fit`` output; ``source`` and ``model`` None):
    a source-free ``method`` (``shot``, ``nrc``, ``aad``) adapts that model on the target alone; its own head is
    kept (no bottleneck is installed) and the selectors that need the source hold-out (``source_val``, ``dev``) are
    skipped (``metrics.json``: ``skipped_selectors``).

    ``label_smoothing``: of the source cross-entropy; default 0.1 for ``source_only`` (a source model for
    source-free adaptation, as SHOT trains its own), 0 for the adaptation methods."""
    tgt = load_dataset(target, "train")
    if source_model is not None and label_smoothing is not None:
        raise TransferlabError("label_smoothing smooths the source cross-entropy: a source-free run has none")
    settings = _Settings(trade_off=trade_off, select=select, epochs=epochs, lr=lr, batch_size=batch_size,
                         image_size=image_size, bottleneck=bottleneck,
                         label_smoothing=source_label_smoothing(method, label_smoothing), sam=sam,
                         weighting=weighting)
    if source_model is not None:
        from ._source_free import check_source_free

        check_source_free(method, select, source, model)
        _check_settings(tgt, method, settings)
    else:
        if source is None or model is None:
            raise TransferlabError("adapt needs a source dataset and a model, or source_model= (a saved source "
                                   "model) for source-free adaptation")
        src = load_dataset(source, "train")
        _check(src, tgt, method, settings)
    _check_step_options(method, settings, source_model is not None)
    factory = METHODS.get(method)
    options = check_options(method, factory, options, skip=3, caller=("adapt", adapt))
    oracle_ds = _oracle(target, target_test)
    if source_model is not None:
        from ._source_free import adapt_source_free

        return adapt_source_free(tgt, oracle_ds, source_model, method, factory, options, settings,
                                 {"out": out, "overwrite": overwrite, "seed": seed, "progress": progress,
                                  "trust_pickle": trust_pickle})
    assert model is not None
    run = _Adaptation(src, tgt, oracle_ds, model, method, factory, options, settings, seed=seed, progress=progress,
                      trust_pickle=trust_pickle)
    with RunOutput(out, model=model, method=f"domain:{method}", what="adaptation", overwrite=overwrite,
                   inputs=[model.split("@")[-1]]) as output:
        return _adapt(run, output)


def _oracle(target: Any, target_test: Any) -> Dataset | None:
    """The labelled target examples of the oracle column: ``target_test``, else the target reference's test split."""
    if target_test is None and isinstance(target, (str, Path)):
        try:
            target_test = load_dataset(target, "test")
        except TransferlabError:
            target_test = None  # no labelled test split: no oracle column
    oracle_ds = load_dataset(target_test, "test") if target_test is not None else None
    if oracle_ds is not None:
        log.info("target labels (%s, %d examples) are used only for the oracle column, never for training or "
                 "selection", oracle_ds.name, len(oracle_ds))
    return oracle_ds


@dataclass(frozen=True)
class _Adaptation:
    """One adaptation's inputs, as :func:`adapt` checked them."""

    src: Dataset
    tgt: Dataset
    oracle_ds: Dataset | None
    model: str
    method: str
    factory: Any
    options: dict[str, Any]
    settings: _Settings
    seed: int
    progress: bool
    trust_pickle: bool


def _adapt(a: _Adaptation, output: RunOutput) -> DomainResult:
    from ..models import build, install_bottleneck_, resolve
    from ..train import TrainConfig, seed_everything, train
    from ._objective import DomainAdaptation

    src, tgt, oracle_ds, model, method, options = a.src, a.tgt, a.oracle_ds, a.model, a.method, a.options
    st = a.settings
    trade_off, select, epochs, batch_size, seed = st.trade_off, st.select, st.epochs, st.batch_size, a.seed
    lr = st.lr if st.lr is not None else DEFAULT_LR
    bottleneck = st.bottleneck
    seed_everything(seed)
    backbone = resolve(model, a.trust_pickle)
    built = build(backbone, src.num_classes)
    if built.modality != "image":
        raise TransferlabError(f"{model} is not an image model: domain adaptation takes images")
    built.image_size = int(st.image_size or backbone.default_size(src))
    install_bottleneck_(built.net, bottleneck, src.num_classes)
    m = a.factory(bottleneck, src.num_classes, seed, **options)
    src_train, src_val = split_validation(src, VAL_FRACTION, seed)
    if src_val is None:
        raise TransferlabError(f"the source {src.name} is too small for a {VAL_FRACTION:.0%} hold-out: no class has "
                               f"{math.ceil(0.5 / VAL_FRACTION)} examples; add source examples")
    data = {"source": built.tensors(src_train, augment=True), "target": built.tensors(tgt, augment=True)}
    selectors = list_selectors()
    objective = DomainAdaptation(method, m, trade_off=trade_off, selectors=selectors, select=select,
                                 target_eval=built.tensors(tgt), source_eval=built.tensors(src_val),
                                 oracle=built.tensors(oracle_ds) if oracle_ds is not None else None,
                                 batch_size=max(64, batch_size), seed=seed, options=options,
                                 label_smoothing=st.label_smoothing, sam=st.sam, weighting=st.weighting)
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    result = train({"model": built.net, **m.modules}, objective, data, cfg, val_data=built.tensors(src_val),
                   checkpoint_dir=output.checkpoints, progress=a.progress)  # a rerun resumes after the last epoch
    seconds = result.train_seconds  # with the epochs before an interruption, on a resumed run
    history = result.history
    picks, oracle_best = picks_of(history, selectors)
    selected, kept_acc, fallback = kept_checkpoint(select, result.best_epoch, picks, objective.guard, built.net,
                                                   history, oracle_best)
    metrics = {
        "method": method, "model": model, "source": src.name, "target": tgt.name, "trade_off": trade_off,
        "label_smoothing": st.label_smoothing, "sam": st.sam, "weighting": st.weighting, "options": options, "select": select, "selected_epoch": selected, "guarded_fallback": fallback,
        "target_accuracy_oracle": kept_acc, "oracle_best_epoch_accuracy": oracle_best,
        "source_val_accuracy": history[selected - 1].get("val_accuracy") if selected else None,
        "picks": picks, "n_source": len(src_train), "n_source_val": len(src_val), "n_target": len(tgt),
        "n_target_test": len(oracle_ds) if oracle_ds is not None else 0, "epochs": len(history),
        "train_seconds": seconds, "resumed_from_epoch": result.resumed_from_epoch, "image_size": built.image_size, "bottleneck": bottleneck, "history": history,
        "oracle_note": "oracle_* values use target labels; they are reported, never used for training or selection",
        "warnings": _colour_warnings(src, tgt),
    }
    if output.out is not None:
        from ..models import architecture_of, bottleneck_structure
        from ..report import domain_report_html

        card = output.card(modality="image", architecture=architecture_of(built.net), num_classes=src.num_classes,
                           class_names=list(src.class_names), **built.preprocessing(), weights="state_dict",
                           structure=bottleneck_structure(built.net), options={"trade_off": trade_off, **options},
                           train={"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                                  "select": select})
        output.write(built.net, card, {**metrics, "model": card.model}, files={"report.html": domain_report_html(metrics)})
    return DomainResult(built.net, metrics, output.out, history)



def _grey_share(ds: Dataset, n: int = 48) -> float | None:
    """The share of a sample of ``ds``'s images whose three channels are equal (grey); None when unreadable."""
    import numpy as np

    from ..zoo import read_image

    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
    grey = 0
    for i in idx:
        item = ds.items[i]
        try:
            a = item if isinstance(item, np.ndarray) else read_image(item)
        except Exception:  # noqa: BLE001  (a damaged image: the loader reports it when training)
            return None
        a = np.asarray(a)
        grey += int(a.ndim == 2 or a.shape[-1] == 1 or (np.array_equal(a[..., 0], a[..., 1])
                                                          and np.array_equal(a[..., 1], a[..., 2])))
    return grey / max(1, len(idx))


def _colour_warnings(src: Dataset, tgt: Dataset) -> list[str]:
    """A grey source and a colour target (or the reverse): part of the shift is colour itself, said in the report."""
    out = _colour_shift(src, tgt)
    for w in out:
        log.warning("%s", w)
    return out


def _colour_shift(src: Dataset, tgt: Dataset) -> list[str]:
    gs, gt = _grey_share(src), _grey_share(tgt)
    if gs is None or gt is None:
        return []
    if gs >= 0.95 and gt <= 0.05:
        return [f"the source {src.name} is greyscale and the target {tgt.name} in colour: part of the shift is colour "
                "itself, which a model trained on grey images has never seen (consider converting the target to grey)"]
    if gt >= 0.95 and gs <= 0.05:
        return [f"the source {src.name} is in colour and the target {tgt.name} greyscale: part of the shift is the "
                "missing colour (consider converting the source to grey)"]
    return []
