"""``fit``: adapt a pretrained model to a labelled dataset with one of the registered methods."""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import check_output, write_text_atomic
from .._registry import check_options
from .._runtime import in_runtime
from ..data import Dataset, load_dataset, split_validation, training_fingerprint
from ..errors import TransferlabError
from ..models import (
    RunOutput,
    RunResult,
    architecture_key,
    architecture_of,
    build,
    head_module_name,
    load,
    predict_logits,
    read_card,
    resolve,
)
from ..train import on_devices
from ._pairs import check_pair_encoder, pair_model_, pair_structure_
from ._registry import METHODS, FitContext, Prepared, TrainJob

log = logging.getLogger(__name__)
DEFAULT_MAX_LENGTH = 128  # tokens; the built-in text set's median review is 27 tokens, 1.5 % exceed 128


def list_methods(pattern: str | None = None) -> list[str]:
    """Names of the registered adaptation methods."""
    return METHODS.list(pattern)


@dataclass
class FitResult(RunResult):
    """A fit: the adapted network, its metrics, its directory, the per-epoch history."""

    #: predicted class of every test example (None without a test split): per-example evidence, e.g. for bootstrap
    #: intervals of the accuracy
    test_predictions: np.ndarray | None = None


def _check_modality(backbone: Any, ds: Dataset) -> None:
    if backbone.modality != ds.modality:
        raise TransferlabError(f"{backbone.ref} takes {backbone.modality} input but {ds.name} holds {ds.modality} "
                               f"data: choose a {ds.modality} model (transferlab zoo list)")


def _prepare(method: str, net: Any, ctx: FitContext, options: dict[str, Any]) -> Prepared:
    try:
        return METHODS.get(method)(net, ctx, **options)
    except TypeError as exc:  # an option the method does not take
        raise TransferlabError(f"{method}: {exc}") from None


def _train(method: str, prep: Prepared, job: TrainJob, options: dict[str, Any]) -> tuple[list[dict], float | None,
                                                                                     dict[str, Any]]:
    """The method's own phases, or one run of the loop with its objective (the supervised one by default), or
    nothing when ``prepare`` already fitted everything; with how the run ended (best epoch, early stop)."""
    from ..train import Supervised, train

    if prep.run is not None:
        outcome = prep.run(prep, job)
        return outcome.history, outcome.val_accuracy, {}
    if not prep.params and prep.objective is None:
        return [], None, {}
    objective = prep.objective or Supervised(
        params=prep.params, terms=[prep.regularizer], lr_scales=prep.lr_scales,
        freeze_norm_stats=prep.freeze_norm_stats, options={"method": method, "options": options})
    result = train({"model": prep.model}, objective, job.train_data, job.config, val_data=job.val_data,
                   progress=job.progress, checkpoint_dir=job.checkpoint_dir)
    return result.history, result.best_val_accuracy, {"best_epoch": result.best_epoch,
                                                       "stopped_early": result.stopped_early}


@on_devices
@in_runtime
def fit(
    dataset: Dataset | str | Path | Any,
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
    patience: int | None = None,
    seed: int = 0,
    progress: bool = False,
    trust_pickle: bool = False,
    init: str | Path | None = None,
    pair_encoder: str | None = None,
    **options: Any,
) -> FitResult:
    """Adapt ``model`` (a model reference) to ``dataset`` (its train split) with ``method``.

    A stratified ``val_fraction`` of the training split is held out for early stopping and model selection; ``test``
    (default: the dataset's test split when ``dataset`` is a reference) gives ``test_accuracy``. With ``out``, the
    adapted model (``model.safetensors`` + ``transferlab.json``) and ``metrics.json`` are written there, and training
    checkpoints each epoch so a killed run resumes. Images are resized to ``image_size`` (default: the model's native
    size, 128 px for images of <= 64 px); texts are truncated to ``max_length`` tokens (default 128). ``patience``:
    stop after that many epochs without a better validation accuracy (the best epoch's weights are kept either way).
    ``pair_encoder`` (sentence pairs only): ``"bi"`` (the default there) a bi-encoder, each text encoded on its own
    and a head on ``[u, v, |u - v|, u * v]`` that starts at their cosine; ``"cross"`` the joined pair as one sequence
    (:mod:`transferlab.fit._pairs`).
    """
    options = check_options(method, METHODS.get(method), options, skip=2, caller=("fit", fit))  # before any work
    from ..train import check_run_arguments

    check_run_arguments(epochs=epochs, lr=lr, batch_size=batch_size, image_size=image_size,
                        val_fraction=val_fraction, budget_minutes=budget_minutes, patience=patience)
    ds = load_dataset(dataset, "train")  # a reference, a Dataset or data in memory
    present = np.flatnonzero(ds.class_counts())
    if len(present) < 2:  # a one-class "classifier" scores 1.0 on anything: refuse, as rank and auto do
        only = ds.class_names[present[0]] if len(present) else "none"
        raise TransferlabError(f"{ds.name} has a single class ({only!r}): a classifier needs at least two classes to "
                               "tell apart; add examples of other classes")
    if test is None and isinstance(dataset, (str, Path)):  # data in memory has no test split: pass test= for one
        test = load_dataset(dataset, "test")
    test_ds = load_dataset(test, "test") if test is not None else None
    backbone = resolve(model, trust_pickle)
    check_pair_encoder(pair_encoder, ds, backbone)
    _check_modality(backbone, ds)
    if backbone.modality == "text":
        if max_length is not None and not 8 <= max_length <= 512:
            raise TransferlabError(f"max_length must lie in [8, 512] tokens, got {max_length}")
        backbone.max_length = int(max_length or DEFAULT_MAX_LENGTH)  # also keys the linear probe's feature cache
    job = _FitJob(method, model, options, epochs=epochs, lr=lr, batch_size=batch_size, image_size=image_size,
                  val_fraction=val_fraction, budget_minutes=budget_minutes, patience=patience, seed=seed,
                  progress=progress, trust_pickle=trust_pickle, init=init, pair_encoder=pair_encoder)
    with RunOutput(out, model=model, method=method, what="fit", overwrite=overwrite,
                   inputs=[init, model.split("@")[-1]]) as output:
        return _fit(ds, test_ds, backbone, job, output)


@dataclass(frozen=True)
class _FitJob:
    """One fit's settings, as :func:`fit` checked them."""

    method: str
    model: str
    options: dict[str, Any]
    epochs: int
    lr: float | None
    batch_size: int
    image_size: int | None
    val_fraction: float
    budget_minutes: float | None
    patience: int | None
    seed: int
    progress: bool
    trust_pickle: bool
    init: str | Path | None
    pair_encoder: str | None = None


def _fit(ds: Dataset, test_ds: Dataset | None, backbone: Any, j: _FitJob, output: RunOutput) -> FitResult:
    from ..train import Supervised, TrainConfig, evaluate, health_warnings, seed_everything

    c = ds.num_classes
    seed_everything(j.seed)
    built = build(backbone, c)
    if built.modality == "image":
        built.image_size = int(j.image_size or backbone.default_size(ds))  # shared with rank
    if output.out is not None:  # the model, its checkpoint and the optimizer's moments: about 4 copies of the weights
        check_output(output.out, need_bytes=4 * sum(p.numel() * p.element_size() for p in built.net.parameters()))
    if j.init is not None:
        from ..zoo import local_weights_id

        _init_from_(built.net, Path(j.init), j.trust_pickle)
        backbone.reweighted("init:" + local_weights_id(Path(j.init)))  # its features are no longer the pretrained's
    train_ds, val_ds = split_validation(ds, j.val_fraction, j.seed)
    pair = pair_model_(built, j.pair_encoder, train_ds)  # sentence pairs: "bi" or "cross"
    train_data = built.tensors(train_ds, augment=True)
    val_data = built.tensors(val_ds) if val_ds is not None else None
    cfg = TrainConfig(epochs=j.epochs, lr=j.lr or METHODS.meta(j.method).get("default_lr") or 1e-3,
                      batch_size=j.batch_size, seed=j.seed,
                      budget_seconds=j.budget_minutes * 60 if j.budget_minutes else None,
                      patience=j.patience if val_data is not None else None,
                      data_fingerprint=training_fingerprint(train_ds, val_ds) if output.checkpoints else None)
    t0 = time.perf_counter()
    prep = _prepare(j.method, built.net, FitContext(backbone, train_ds, built.image_size, j.seed), j.options)
    pair_structure_(prep, built, pair)
    history, val_acc, ending = _train(j.method, prep, TrainJob(train_data, val_data, cfg, j.progress,
                                                                 output.checkpoints), j.options)
    net = prep.model
    train_seconds = time.perf_counter() - t0
    if val_acc is None and val_data is not None:
        dev = next(net.parameters()).device
        val_acc = evaluate(Supervised(), {"model": net}, val_data, j.batch_size, device=dev)["accuracy"]
    test_data = built.tensors(test_ds) if test_ds is not None else None
    y_pred = _predict_test(net, test_data, j.batch_size, j.progress) if test_data is not None else None
    test_acc = float(np.mean(y_pred == test_ds.labels)) if test_data is not None else None
    metrics = {
        "method": j.method, "model": j.model, "dataset": ds.name, "test_accuracy": test_acc, "val_accuracy": val_acc,
        "n_train": len(train_ds), "n_val": len(val_ds) if val_ds is not None else 0,
        "n_test": len(test_ds) if test_ds is not None else 0,
        "trainable_params": int(sum(p.numel() for p in prep.params)),
        "total_params": int(sum(p.numel() for p in net.parameters())),
        "train_seconds": train_seconds, "epochs": len(history), **ending, **built.preprocessing(),
        **({"pair_encoder": pair} if pair else {}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "history": history,
        "warnings": health_warnings(y_true=test_ds.labels if test_ds is not None else None, y_pred=y_pred,
                                    class_names=list(ds.class_names), history=history,
                                    n_val=len(val_ds) if val_ds is not None else None,
                                    kept_epoch=ending.get("best_epoch")),
    }
    for w in metrics["warnings"]:
        log.warning("%s", w)
    metrics.update(prep.metrics)
    if output.out is not None:
        from ..models import recorded_path

        # local paths are written relative to the output, never as absolute paths of this machine (models._paths)
        card = output.card(modality=built.modality, architecture=architecture_of(net), num_classes=c,
                           class_names=list(ds.class_names), **built.preprocessing(),
                           weights=prep.stored_as(from_init=j.init is not None), structure=prep.structure,
                           options=j.options, train={"epochs": j.epochs, "lr": cfg.lr, "batch_size": j.batch_size,
                                                     "seed": j.seed, "val_fraction": j.val_fraction},
                           init=recorded_path(j.init, output.out) if j.init is not None else None)
        files: dict[str, Any] = dict(prep.files)
        if test_data is not None:
            files["report.html"] = lambda path: _write_report(path, net, card.to_json(), metrics, test_data,
                                                              test_ds.labels, y_pred, j.progress)
        output.write(net, card, {**metrics, "model": card.model}, files=files, tokenizer=built.tokenizer,
                     base=j.model, trust_pickle=j.trust_pickle)
    return FitResult(net, metrics, output.out, history, y_pred)


def _predict_test(net: Any, data: Any, batch_size: int, progress: bool) -> np.ndarray:
    """Predicted classes of the test split, with a bar (the test split can take as long as an epoch)."""
    from .._progress import progress as progress_bars

    with progress_bars(progress) as bars:
        task = bars.add("test prediction", len(data))
        return predict_logits(net, data, batch_size, on_batch=lambda n: bars.advance(task, n)).argmax(1)


def _write_report(path: Path, net: Any, config: dict[str, Any], metrics: dict[str, Any], data: Any,
                  y_true: np.ndarray, y_pred: np.ndarray, progress: bool = False) -> None:
    from .._progress import progress as progress_bars
    from ..report import fit_report_html
    from ._cam import gradcam_panels

    with progress_bars(progress) as bars:
        image = config.get("modality") != "text"
        task = bars.add("report", 2 if image else 1, note="Grad-CAM" if image else "figures")
        if not image:
            panels, note = [], "Grad-CAM explains image models; this is a text model."
        else:
            try:
                panels, note = gradcam_panels(net, data, y_true, y_pred, config["class_names"],
                                              tuple(config["mean"]), tuple(config["std"]))
            except Exception as exc:  # the report must not fail a finished fit; say why the panel is missing
                log.warning("Grad-CAM failed: %s", exc)
                panels, note = [], f"Grad-CAM failed on this model: {exc}"
            bars.advance(task, note="figures")
        html = fit_report_html(metrics, config, y_true, y_pred, panels, note)
        write_text_atomic(path, html)
        bars.advance(task, note="written")


def _init_from_(net: Any, init: Path, trust_pickle: bool) -> None:
    """Load an earlier fit's weights into ``net`` in place (same architecture; head only if the shapes match)."""
    from ..models import rename_modules_

    card = read_card(init)
    prev = load(init, trust_pickle=trust_pickle)
    if architecture_key(card.architecture) != architecture_key(architecture_of(net)):
        raise TransferlabError(f"--init {init} is a {card.architecture['name']} but the model to fit is a "
                               f"{architecture_of(net)['name']}: initialise from a fit of the same architecture")
    if card.weights == "peft":
        prev = prev.merge_and_unload()
    elif card.structure:
        raise TransferlabError(f"--init from an {card.method!r} fit is not supported: its adapters are not part of "
                               "the base architecture")
    rename_modules_(prev, getattr(net, "names", None))  # a text fit saved before transformers' module names
    state = prev.state_dict()
    own = net.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in keep]
    head = {n for n, _ in net.get_classifier().named_parameters(prefix=head_module_name(net))}
    if any(k not in head for k in missing):
        raise TransferlabError(f"--init {init}: weights do not fit the model (first mismatch: "
                               f"{next(k for k in missing if k not in head)})")
    net.load_state_dict(keep, strict=False)
