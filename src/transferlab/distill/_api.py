"""``distill``: one or many frozen teachers into a small student, on the one training loop, with the evidence (transfer
delta, knowledge gain and loss, complementary knowledge, agreement, parameters and measured latency)."""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_dir, check_output, write_json_atomic, write_text_atomic
from .._registry import check_options
from .._version import __version__
from ..data import Dataset, load_dataset, split_validation, train_and_test
from ..errors import TransferlabError
from ._members import Member, load_student, load_teacher, same_model
from ._methods import METHODS

log = logging.getLogger(__name__)
DEFAULT_LR = 1e-3
VAL_FRACTION = 0.1


def list_methods() -> list[str]:
    """The distillation methods (``dkd``, ``feature``, ``kd``, ``kl_dp``, ``multi_avg``, ``multi_weighted``)."""
    return METHODS.list()


@dataclass
class DistillResult:
    model: Any
    metrics: dict[str, Any]
    out_dir: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "out_dir": None if self.out_dir is None else str(self.out_dir),
                "history": self.history}


def distill(
    data: Dataset | str | Path | Any,
    teachers: Sequence[str | Path] | str | Path,
    student: str | Path,
    method: str = "kd",
    *,
    unlabelled: Dataset | str | Path | Any | None = None,
    test: Dataset | str | Path | None = None,
    epochs: int = 10,
    lr: float | None = None,
    batch_size: int = 32,
    image_size: int | None = None,
    patience: int | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
    progress: bool = False,
    trust_pickle: bool = False,
    **options: Any,
) -> DistillResult:
    """Distil ``teachers`` (model directories, or references whose head predicts the data's classes) into
    ``student`` (a model reference: pretrained body, fresh head; or a fitted directory) on ``data`` (its train
    split; 10 % held out for selecting the epoch) by ``method``; ``unlabelled``: more examples that are only
    distilled. ``test`` (default: the data's test split) gives the evidence. With ``out``: an ordinary model directory
    (``predict``, ``evaluate``, ``merge`` work on it), ``metrics.json`` and ``report.html``; an interrupted run
    resumes from ``out/checkpoints``."""
    if method not in METHODS:
        raise TransferlabError(f"unknown distillation method {method!r}; known: {', '.join(list_methods())}")
    factory = METHODS.get(method)
    options = check_options(method, factory, options, skip=1, caller=("distill", distill))
    teacher_refs = [teachers] if isinstance(teachers, (str, Path)) else list(teachers or [])
    if not teacher_refs:
        raise TransferlabError("no teacher: give at least one (--teacher DIR)")
    m = factory(len(teacher_refs), **options)  # option values checked before any work
    from ..train import check_run_arguments

    check_run_arguments(epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size, patience=patience,
                        min_batch_size=2)
    for t in teacher_refs:
        if same_model(t, student):
            raise TransferlabError(f"the student {student} is also a teacher: distil from other models, or use fit")
    ds, test_ds = train_and_test(data, test)
    extra = load_dataset(unlabelled, "train") if unlabelled is not None else None
    if extra is not None and extra.modality != ds.modality:
        raise TransferlabError(f"the unlabelled data {extra.name} holds {extra.modality} data, {ds.name} "
                               f"{ds.modality}: both must be the same kind")
    out_dir = Path(out) if out is not None else None
    scratch = None
    if out_dir is not None:
        from ..models import claim_output

        check_output(out_dir, inputs=[str(student).split("@")[-1], *map(str, teacher_refs)])
        scratch = claim_output(out_dir, {"model": _recorded_model(student), "method": f"distill:{method}"},
                               overwrite, "distillation")
    try:
        return _distill(ds, extra, test_ds, teacher_refs, student, method, m, options, epochs=epochs,
                        lr=lr if lr is not None else DEFAULT_LR, batch_size=batch_size, image_size=image_size,
                        patience=patience, out_dir=out_dir, seed=seed, progress=progress,
                        trust_pickle=trust_pickle,
                        checkpoint_dir=scratch or (out_dir / "checkpoints" if out_dir is not None else None))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _identity(ref: str | Path) -> str:
    """A teacher as the checkpoint fingerprint knows it: a directory by its resolved path, a reference as given."""
    d = Path(ref).expanduser()
    return str(d.resolve()) if d.is_dir() else str(ref)


def _recorded_model(student: str | Path) -> str:
    """The model reference a distilled student's card records: a fitted student's own base (as this machine opens
    it), else the student reference."""
    from ..models import card_file, local_reference, read_card

    d = Path(student).expanduser()
    if d.is_dir() and card_file(d) is not None:
        base = read_card(d).model
        return local_reference(base, d) if base else str(d)
    return str(student)


def _logits(member: Member, ds: Dataset, batch_size: int) -> np.ndarray:
    return member.logits(ds, batch_size)


def latency_ms(member: Member, ds: Dataset, n: int = 32, repeats: int = 5) -> float:
    """Median milliseconds per image of a forward pass on a batch of ``n`` test examples (one warm-up)."""
    import torch

    data = member.inputs(ds.subset(np.arange(min(n, len(ds)))))
    net = member.net
    dev = next(net.parameters()).device
    x = torch.stack([data[i][0] for i in range(len(data))]).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    was = net.training
    net.eval()
    times = []
    with torch.inference_mode():
        net(x)
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            net(x)
            sync()
            times.append(time.perf_counter() - t0)
    net.train(was)
    return 1000.0 * statistics.median(times) / len(x)


def _distill(ds: Dataset, extra: Dataset | None, test_ds: Dataset | None, teacher_refs: list[str | Path],
             student_ref: str | Path, method: str, m: Any, options: dict[str, Any], *, epochs: int, lr: float,
             batch_size: int, image_size: int | None, patience: int | None, out_dir: Path | None, seed: int,
             progress: bool, trust_pickle: bool, checkpoint_dir: Path | None) -> DistillResult:
    from ..train import TrainConfig, seed_everything, train
    from ._inputs import Views, feed_keys
    from ._methods import Setup
    from ._objective import Distillation, teacher_name

    seed_everything(seed)
    teachers = [load_teacher(t, ds, trust_pickle) for t in teacher_refs]
    student = load_student(student_ref, ds, image_size, trust_pickle)
    if student.modality != ds.modality:
        raise TransferlabError(f"the student {student_ref} takes {student.modality} input; {ds.name} holds "
                               f"{ds.modality}")
    train_ds, val_ds = split_validation(ds, VAL_FRACTION, seed)
    feeds: list[tuple[Any, ...]] = [student.feed]
    toks: list[Any] = [student.tokenizer]
    for t in teachers:
        if t.feed not in feeds:
            feeds.append(t.feed)
            toks.append(t.tokenizer)
    keys = feed_keys(feeds, [t.feed for t in teachers])
    parts = [(train_ds, True)] + ([(extra, False)] if extra is not None else [])
    data = Views(parts, feeds, toks, augment=True)
    val_data = Views([(val_ds, True)], [student.feed], [student.tokenizer]) if val_ds is not None else None

    setup = Setup(student, str(student_ref), teachers, ds, train_ds, batch_size, seed)
    weights, weight_table = [1.0 / len(teachers)] * len(teachers), {}
    if m.teacher_weights is not None:
        weights, weight_table = m.teacher_weights(setup)

    before = _logits(student, test_ds, max(64, batch_size)) if test_ds is not None else None
    modules: dict[str, Any] = {"model": student.net}
    for k, t in enumerate(teachers):
        modules[teacher_name(k)] = t.net
    if m.modules is not None:
        modules.update(m.modules(setup))
    warnings = setup.warnings
    for w in warnings:
        log.warning("%s", w)
    objective = Distillation(method, m, keys=keys, orders=[t.order for t in teachers], weights=weights,
                             options={**options, "teachers": [_identity(t) for t in teacher_refs]})
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                      patience=patience if val_data is not None else None)
    try:
        result = train(modules, objective, data, cfg, val_data=val_data, checkpoint_dir=checkpoint_dir,
                       progress=progress)
    finally:
        objective.close()  # the feature hooks leave the networks
    student.net.eval()
    metrics: dict[str, Any] = {
        "method": method, "student": str(student_ref), "teachers": [str(t) for t in teacher_refs],
        "dataset": ds.name, "class_names": list(ds.class_names), "unlabelled": extra.name if extra is not None else None,
        "n_train": len(train_ds), "n_val": len(val_ds) if val_ds is not None else 0,
        "n_unlabelled": len(extra) if extra is not None else 0, "n_test": len(test_ds) if test_ds is not None else 0,
        "options": options, "teacher_weights": weights, "weight_scores": weight_table,
        "selected_epoch": result.best_epoch, "epochs": len(result.history), "train_seconds": result.train_seconds,
        "resumed_from_epoch": result.resumed_from_epoch, "stopped_early": result.stopped_early,
        "val_accuracy": (result.history[result.best_epoch - 1].get("val_accuracy") if result.best_epoch else None),
        "student_params": student.params, "teacher_params": [t.params for t in teachers],
        "student_started_trained": bool(student.meta.get("trained")), "warnings": warnings,
        "history": result.history,
    }
    if test_ds is not None:
        from ._evidence import transfer_metrics

        after = _logits(student, test_ds, max(64, batch_size))
        t_logits = [_logits(t, test_ds, max(64, batch_size)) for t in teachers]
        metrics.update(transfer_metrics(np.asarray(test_ds.labels), before, after, t_logits))
        s_ms = latency_ms(student, test_ds)
        t_ms = [latency_ms(t, test_ds) for t in teachers]
        metrics.update({"student_ms_per_image": s_ms, "teacher_ms_per_image": t_ms,
                        "speedup": [t / s_ms if s_ms > 0 else None for t in t_ms]})
    if out_dir is not None:
        _save(out_dir, student, student_ref, method, options, metrics, epochs, lr, batch_size, seed, trust_pickle)
    return DistillResult(student.net, metrics, out_dir, result.history)


def _save(out_dir: Path, student: Member, student_ref: str | Path, method: str, options: dict[str, Any],
          metrics: dict[str, Any], epochs: int, lr: float, batch_size: int, seed: int, trust_pickle: bool) -> None:
    from ..models import FORMAT, architecture_of, portable, recorded_reference, save_model
    from ..report import distill_report_html

    net = student.net
    if student.card is not None:  # a fitted student: its base model, structure and preprocessing carry over
        c = student.card
        base = _recorded_model(student.directory) if c.get("model") else ""
        card = {"model": recorded_reference(base, out_dir) if base else None, "modality": student.modality,
                "architecture": architecture_of(net) if c.get("weights") == "peft" else c["architecture"],
                "num_classes": c["num_classes"], "class_names": list(c["class_names"]),
                "structure": {} if c.get("weights") == "peft" else c.get("structure") or {},
                **{k: c[k] for k in ("image_size", "mean", "std", "max_length") if c.get(k) is not None}}
        base_ref = base
    else:
        built = student.meta["built"]
        card = {"model": recorded_reference(str(student_ref), out_dir), "modality": built.modality,
                "architecture": architecture_of(net), "num_classes": len(metrics["class_names"]),
                "class_names": list(metrics["class_names"]), "structure": {}, **built.preprocessing()}
        base_ref = str(student_ref)
    card.update({"method": f"distill:{method}", "transferlab_version": __version__, "format": FORMAT,
                 "weights": "state_dict", "options": portable(options, out_dir),
                 "teachers": [recorded_reference(t, out_dir) for t in metrics["teachers"]],
                 "train": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}})
    with atomic_dir(out_dir) as stage:
        save_model(stage, net, card, student.tokenizer, base=base_ref or None, trust_pickle=trust_pickle)
        write_json_atomic(stage / "metrics.json", portable(metrics, out_dir))
        write_text_atomic(stage / "report.html", distill_report_html(metrics))

