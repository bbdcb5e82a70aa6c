"""Source-free adaptation: ``adapt(None, target, method="shot", source_model=FIT_OUTPUT)`` — a saved source model
adapts on the unlabelled target alone (no source data)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..data import Dataset
from ..errors import TransferlabError
from ..models import RunOutput

log = logging.getLogger(__name__)
NEEDS_SOURCE = ("source_val", "dev")  # selectors defined on the labelled source hold-out only


def check_source_free(method: str, select: str, source: Any, model: Any) -> None:
    """One clear error for a source-free call that cannot run."""
    from ._methods import METHODS

    if source is not None or model is not None:
        raise TransferlabError("source_model adapts a trained source model without source data: give no source "
                               "dataset and no model (the source model is both)")
    if method not in METHODS or not METHODS.meta(method).get("source_free"):
        free = [m for m in METHODS.list() if METHODS.meta(m).get("source_free")]
        raise TransferlabError(f"{method!r} needs source data; with source_model (no source data) the methods are "
                               f"{', '.join(free)}")
    if select in NEEDS_SOURCE:
        raise TransferlabError(f"the selector {select!r} needs a labelled source hold-out, which a source-free run "
                               "does not have: choose another (--list)")


def load_source_model(path: str | Path, target: Dataset, trust_pickle: bool) -> tuple[Any, Any]:
    """(network, card) of a saved model whose classes are the target's, in the same order."""
    from ..models import load, read_card

    card = read_card(Path(path))
    if card.modality != "image":
        raise TransferlabError(f"{path} is a {card.modality} model: domain adaptation takes images")
    if list(card.class_names) != list(target.class_names):
        raise TransferlabError(f"the source model {path} and the target {target.name} must have the same classes in "
                               f"the same order ({len(card.class_names)} vs {len(target.class_names)} classes)")
    return load(path, trust_pickle=trust_pickle), card


def adapt_source_free(tgt: Dataset, oracle_ds: Dataset | None, source_model: str | Path, method: str,
                      factory: Any, options: dict[str, Any], settings: Any, run: dict[str, Any]) -> Any:
    """The run of :func:`~._api.adapt` with ``source_model``; ``run``: out, overwrite, seed, progress,
    trust_pickle."""
    from ..models import Built
    from ..train import TrainConfig, seed_everything, train
    from ._objective import SourceFreeAdaptation, final_linear
    from ._records import SOURCE_FREE_LR, DomainResult, kept_checkpoint, picks_of
    from ._selectors import SELECTORS

    seed = run["seed"]
    seed_everything(seed)
    net, card = load_source_model(source_model, tgt, run["trust_pickle"])
    built = Built(net, "image", int(settings.image_size or card.image_size or 224), tuple(card.mean or ()),
                  tuple(card.std or ()), interpolation=card.preprocessing()["interpolation"])
    m = factory(int(final_linear(net).in_features), tgt.num_classes, seed, **options)
    selectors = [s for s in SELECTORS.list() if s not in NEEDS_SOURCE]
    objective = SourceFreeAdaptation(method, m, selectors=selectors, select=settings.select,
                                     target_eval=built.tensors(tgt),
                                     oracle=built.tensors(oracle_ds) if oracle_ds is not None else None,
                                     batch_size=max(64, settings.batch_size), seed=seed, options=options)
    lr = settings.lr if settings.lr is not None else SOURCE_FREE_LR
    cfg = TrainConfig(epochs=settings.epochs, lr=lr, batch_size=settings.batch_size, seed=seed)
    with RunOutput(run["out"], model=card.model, method=f"domain:{method}", what="adaptation",
                   overwrite=run["overwrite"], inputs=[str(source_model)]) as output:
        result = train({"model": net}, objective, built.tensors(tgt, augment=True), cfg,
                       checkpoint_dir=output.checkpoints, progress=run["progress"])
        history = result.history
        picks, oracle_best = picks_of(history, selectors)
        selected, kept_acc, fallback = kept_checkpoint(settings.select, result.best_epoch, picks, objective.guard,
                                                       net, history, oracle_best)
        metrics = {
            "method": method, "source_model": str(source_model), "model": card.model, "source": None,
            "target": tgt.name, "source_free": True, "options": options, "select": settings.select,
            "selected_epoch": selected, "guarded_fallback": fallback, "target_accuracy_oracle": kept_acc,
            "source_model_accuracy_oracle": objective.guard.oracle_accuracy,
            "oracle_best_epoch_accuracy": oracle_best, "source_val_accuracy": None, "picks": picks,
            "skipped_selectors": {s: "needs a labelled source hold-out" for s in NEEDS_SOURCE},
            "trade_off": 1.0, "n_source": 0, "n_source_val": 0, "n_target": len(tgt), "n_target_test": len(oracle_ds) if oracle_ds is not None else 0,
            "epochs": len(history), "train_seconds": result.train_seconds,
            "resumed_from_epoch": result.resumed_from_epoch, "image_size": built.image_size, "history": history,
            "oracle_note": "oracle_* values use target labels; they are reported, never used for training or "
                           "selection", "warnings": [],
        }
        if output.out is not None:
            _write(output, built, card, metrics, {"lr": lr, "settings": settings, "seed": seed})
    return DomainResult(net, metrics, output.out, history)


def _write(output: RunOutput, built: Any, card: Any, metrics: dict[str, Any], train_cfg: dict[str, Any]) -> None:
    from ..models import architecture_of
    from ..report import domain_report_html

    s = train_cfg["settings"]
    new = output.card(modality="image", architecture=architecture_of(built.net), num_classes=card.num_classes,
                      class_names=list(card.class_names), **built.preprocessing(), weights="state_dict",
                      structure=dict(card.structure), options=dict(metrics["options"]),
                      train={"epochs": s.epochs, "lr": train_cfg["lr"], "batch_size": s.batch_size,
                             "seed": train_cfg["seed"], "select": s.select,
                             "source_model": metrics["source_model"]})
    output.write(built.net, new, {**metrics, "model": new.model}, files={"report.html": domain_report_html(metrics)})
