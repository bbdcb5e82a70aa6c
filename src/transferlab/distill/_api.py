"""``distill``: one or many frozen teachers into a small student, on the one training loop, with the evidence (transfer
delta, knowledge gain and loss, complementary knowledge, agreement, parameters and measured latency)."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import check_options
from .._runtime import in_runtime
from ..data import Dataset, load_dataset, split_validation, train_and_test
from ..errors import TransferlabError
from ..models import RunOutput, RunResult
from ..train import on_devices
from ._members import Member, load_student, load_teacher, same_model
from ._methods import METHODS

log = logging.getLogger(__name__)
DEFAULT_LR = 1e-3
VAL_FRACTION = 0.1


def list_methods() -> list[str]:
    """The distillation methods (``dkd``, ``feature``, ``kd``, ``kl_dp``, ``multi_avg``, ``multi_weighted``)."""
    return METHODS.list()


class DistillResult(RunResult):
    """A distillation: the student, its metrics (the transfer evidence), its directory, the per-epoch history."""


@on_devices
@in_runtime
def distill(
    data: Dataset | str | Path | Any,
    teachers: Sequence[str | Path] | str | Path,
    student: str | Path,
    method: str = "kd",
    *,
    unlabelled: Dataset | str | Path | Any | None = None,
    heldout: Dataset | str | Path | None = None,
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
    distilled; ``heldout``: labelled examples of the data's classes that no teacher trained on (``multi_weighted``
    scores its teachers on them; its train split). ``test`` (default: the data's test split) gives the evidence. With ``out``: an ordinary model directory
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
    held = _heldout(heldout, ds)
    job = _DistillJob(teacher_refs, student, method, m, options, epochs=epochs,
                      lr=lr if lr is not None else DEFAULT_LR, batch_size=batch_size, image_size=image_size,
                      patience=patience, seed=seed, progress=progress, trust_pickle=trust_pickle)
    with RunOutput(out, model=_recorded_model(student), method=f"distill:{method}", what="distillation",
                   overwrite=overwrite, inputs=[str(student).split("@")[-1], *map(str, teacher_refs)]) as output:
        return _distill(ds, extra, test_ds, job, output, held)


@dataclass(frozen=True)
class _DistillJob:
    """One distillation's settings, as :func:`distill` checked them."""

    teacher_refs: list[str | Path]
    student_ref: str | Path
    method: str
    m: Any
    options: dict[str, Any]
    epochs: int
    lr: float
    batch_size: int
    image_size: int | None
    patience: int | None
    seed: int
    progress: bool
    trust_pickle: bool


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


def _heldout(heldout: Dataset | str | Path | None, ds: Dataset) -> Dataset | None:
    """The held-out examples, checked: the data's classes, the same kind of data."""
    if heldout is None:
        return None
    held = load_dataset(heldout, "train")
    if held.modality != ds.modality or [str(c) for c in held.class_names] != [str(c) for c in ds.class_names]:
        raise TransferlabError(f"the held-out data {held.name} must hold {ds.name}'s kind of data and classes "
                               f"({', '.join(map(str, ds.class_names))}), in that order")
    return held


def _distill(ds: Dataset, extra: Dataset | None, test_ds: Dataset | None, j: _DistillJob,
             output: RunOutput, heldout: Dataset | None = None) -> DistillResult:
    from ..train import TrainConfig, seed_everything, train
    from ._inputs import Views, feed_keys
    from ._methods import Setup
    from ._objective import Distillation, teacher_name

    teacher_refs, student_ref, method, m, options = j.teacher_refs, j.student_ref, j.method, j.m, j.options
    batch_size, seed = j.batch_size, j.seed
    seed_everything(seed)
    teachers = [load_teacher(t, ds, j.trust_pickle) for t in teacher_refs]
    student = load_student(student_ref, ds, j.image_size, j.trust_pickle)
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

    setup = Setup(student, str(student_ref), teachers, ds, train_ds, batch_size, seed, val=val_ds, unlabelled=extra,
                  heldout=heldout)
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
    cfg = TrainConfig(epochs=j.epochs, lr=j.lr, batch_size=batch_size, seed=seed,
                      patience=j.patience if val_data is not None else None)
    try:
        result = train(modules, objective, data, cfg, val_data=val_data, checkpoint_dir=output.checkpoints,
                       progress=j.progress)
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
        _test_evidence(metrics, student, teachers, test_ds, before, batch_size, objective.last_state)
    if output.out is not None:
        _save(output, student, j, metrics)
    return DistillResult(student.net, metrics, output.out, result.history)


def _test_evidence(metrics: dict[str, Any], student: Member, teachers: Sequence[Member], test_ds: Dataset,
                   before: np.ndarray | None, batch_size: int, last_state: dict[str, Any] | None) -> None:
    """The transfer evidence on the test split, the last epoch's test accuracy beside the selected epoch's (the
    field reports the best epoch; mdistiller#7, #42 ask for the last one too), health warnings and latencies."""
    from ._evidence import transfer_metrics

    bs = max(64, batch_size)
    y = np.asarray(test_ds.labels)
    after = _logits(student, test_ds, bs)
    metrics.update(transfer_metrics(y, before, after, [_logits(t, test_ds, bs) for t in teachers]))
    last = metrics["test_accuracy"] if metrics["selected_epoch"] in (None, metrics["epochs"]) else None
    if last is None and last_state is not None:  # None: a resumed run that trained no epoch here
        selected = {k: v.detach().clone() for k, v in student.net.state_dict().items()}
        student.net.load_state_dict(last_state)
        last = float(np.mean(_logits(student, test_ds, bs).argmax(1) == y))
        student.net.load_state_dict(selected)
    metrics["last_epoch_test_accuracy"] = last
    metrics["warnings"] = metrics["warnings"] + _health(metrics, y, after, metrics["class_names"], metrics["history"])
    s_ms = latency_ms(student, test_ds)
    t_ms = [latency_ms(t, test_ds) for t in teachers]
    metrics.update({"student_ms_per_image": s_ms, "teacher_ms_per_image": t_ms,
                    "speedup": [t / s_ms if s_ms > 0 else None for t in t_ms]})


def _health(metrics: dict[str, Any], y: np.ndarray, logits: np.ndarray, names: list[str],
            history: list[dict[str, Any]]) -> list[str]:
    """What is plainly wrong with the distilled student (train.health_warnings), and a transfer delta measured from
    a student that started at chance (a fresh head: the delta counts everything the training taught, not what the
    teachers added; the labels-only student is the comparison that says that)."""
    from ..train import CHANCE_MARGIN, chance_level, health_warnings

    out = health_warnings(y_true=y, y_pred=logits.argmax(1), class_names=names, history=history,
                          what="the student")
    start = metrics.get("start_test_accuracy")
    chance = chance_level(y, len(names)) + CHANCE_MARGIN
    if start is not None and not metrics.get("student_started_trained") and start <= chance:
        out.append(f"the transfer delta ({100 * (metrics.get('transfer_delta') or 0):+.1f} points) is measured from "
                   f"a fresh head at chance ({start:.3f}): it counts what all of the training taught; compare with a "
                   "student fine-tuned on the labels alone (transferlab fit, or bench distill's labels_only row) for "
                   "what the teachers added")
    for w in out:
        log.warning("%s", w)
    return out


def _save(output: RunOutput, student: Member, j: _DistillJob, metrics: dict[str, Any]) -> None:
    from ..models import architecture_of, recorded_reference
    from ..report import distill_report_html

    net, out = student.net, output.out
    assert out is not None
    if student.card is not None:  # a fitted student: its base model, structure and preprocessing carry over
        c = student.card
        base = _recorded_model(student.directory) if c.get("model") else ""
        fields = {"model": recorded_reference(base, out) if base else None, "modality": student.modality,
                  "architecture": architecture_of(net) if c.get("weights") == "peft" else c["architecture"],
                  "num_classes": c["num_classes"], "class_names": list(c["class_names"]),
                  "structure": {} if c.get("weights") == "peft" else c.get("structure") or {},
                  **{k: c[k] for k in ("image_size", "mean", "std", "interpolation", "max_length")
                     if c.get(k) is not None}}
        base_ref = base
    else:
        built = student.meta["built"]
        fields = {"modality": built.modality, "architecture": architecture_of(net),
                  "num_classes": len(metrics["class_names"]), "class_names": list(metrics["class_names"]),
                  "structure": {}, **built.preprocessing()}
        base_ref = str(j.student_ref)
    card = output.card(**fields, weights="state_dict", options=j.options,
                       teachers=[recorded_reference(t, out) for t in metrics["teachers"]],
                       train={"epochs": j.epochs, "lr": j.lr, "batch_size": j.batch_size, "seed": j.seed})
    output.write(net, card, metrics, files={"report.html": distill_report_html(metrics)}, tokenizer=student.tokenizer,
                 base=base_ref or None, trust_pickle=j.trust_pickle)
