"""``bench distill``: every distillation method against the labels-only student, on built-in (or given) targets, over
seeds, with all the training labels and with only a share of them (the rest given as unlabelled examples).

Per (target, label setting): each teacher is fine-tuned on the labelled part (cached; a teacher never sees labels the
student cannot; with ``multi_weighted`` rows, on all but a 10 % hold-out that row scores them on). Per student and
seed: the labels-only student (``fit`` finetune on the labelled part), then

- ``kd[T]`` from each teacher T, ``multi_avg`` and ``multi_weighted`` over all teachers, ``feature`` from the
  strongest teacher (by held-out accuracy): fresh students; ``dkd``, ``dist`` (:data:`DIST_OPTIONS`) and ``kd_zscore``
  (:data:`ZSCORE_OPTIONS`) from the strongest teacher (fresh students; only when asked for: ``rows=[..., "dkd"]``);
- ``kd_trained[weak]`` and ``kl_dp_trained[weak]``: the labels-only student distilled further from the weakest
  teacher — the case KL+DP exists for (a weaker teacher must not pull a good student down).

Each run records its test accuracy at the selected epoch (best held-out accuracy) and at the last (labels-only
rows: when it is the selected one; ``fit`` keeps no other). Every run is a job of the bench harness, cached in
``out/runs/<key>.json``, every fitted teacher and labels-only student in ``out/models``: it resumes run by run."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import TransferlabError
from ._harness import Job, asked_runtime, backend_of, fmt, run_jobs
from ._result import DeclaredResult
from ._tables import distill_checks, distill_tables

TARGETS = ("builtin:shapes", "builtin:fashion-mnist")
TEACHERS = ("builtin:efficientnet_lite0", "builtin:small_convnext_fashion")
STUDENTS = ("builtin:small_resnet_shapes",)
LABEL_SHARES = (1.0, 0.2)
#: the row families a bench may run (``labels_only`` always runs: every delta is against it)
ROWS = ("kd", "multi_avg", "multi_weighted", "feature", "kd_trained", "kl_dp_trained", "dkd", "dist", "kd_zscore")
#: the families a bench runs when none are named: the published tables' (dkd is asked for by name)
DEFAULT_ROWS = ("kd", "multi_avg", "multi_weighted", "feature", "kd_trained", "kl_dp_trained")
FORMAT = 2  # of the cached runs: raise it when a record changes (2: last-epoch accuracy)
#: the kd_zscore rows' options: logit-standardization-KD's README runs KD with --logit-stand --base-temp 2
#: --kd-weight 9 beside mdistiller's CE weight 0.1: 0.1·CE + 9·T²·KL is our kd_weight 9 / 9.1 (AdamW: the scale is moot)
ZSCORE_OPTIONS = {"zscore": True, "temperature": 2.0, "kd_weight": round(9 / 9.1, 4)}
DIST_OPTIONS = {"temperature": 4.0, "dist_weight": 2.0}  #: the reference's CIFAR recipe: dist_t4, CE 1, DIST 2


def _short(ref: str) -> str:
    """A model's name in row labels: the reference without ``builtin:`` and without a local weights path."""
    ref = str(ref)
    if ":" not in ref:
        return Path(ref).name
    return ref.split("@", 1)[0].removeprefix("builtin:")


@dataclass
class DistillBenchResult(DeclaredResult):
    targets: list[str]
    teachers: list[str]
    students: list[str]
    seeds: list[int]
    label_shares: list[float]
    runs: list[dict[str, Any]]  # one per (target, share, student, seed, row)
    teacher_runs: list[dict[str, Any]]  # one per (target, share, teacher): its accuracy, params, latency
    options: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """Per (target, share, student, row): means (± sd) over seeds, the mean per-seed delta vs labels-only."""
        out = []
        keys = sorted({(r["target"], r["label_share"], r["student"], r["row"]) for r in self.runs},
                      key=lambda k: (k[0], -k[1], k[2], _ROW_ORDER(k[3])))
        for t, share, s, row in keys:
            rs = [r for r in self.runs if (r["target"], r["label_share"], r["student"], r["row"]) == (t, share, s, row)]
            base = {r["seed"]: r["test_accuracy"] for r in self.runs if (r["target"], r["label_share"], r["student"],
                                                                          r["row"]) == (t, share, s, "labels_only")}
            acc = [r["test_accuracy"] for r in rs]
            delta = [r["test_accuracy"] - base[r["seed"]] for r in rs if r["seed"] in base]
            means = {k: _mean([r[k] for r in rs if r.get(k) is not None]) for k in (
                "selected_epoch", "transfer_delta", "knowledge_gain", "knowledge_loss", "seconds")}
            last = [r["last_epoch_test_accuracy"] for r in rs if r.get("last_epoch_test_accuracy") is not None]
            out.append({"target": t, "label_share": share, "student": s, "row": row, "n": len(rs),
                        "accuracy_mean": _mean(acc), "accuracy_sd": _sd(acc), "delta_vs_labels_only": _mean(delta),
                        "last_accuracy_mean": _mean(last), "last_accuracy_sd": _sd(last), **means,
                        "params": rs[0].get("params"), "ms_per_image": _median([r.get("ms_per_image") for r in rs])})
        return out

    def _data(self) -> dict[str, Any]:
        d = {"transferlab_version": __version__, "targets": self.targets, "teachers": self.teachers,
             "students": self.students, "seeds": self.seeds, "label_shares": self.label_shares,
             "table": self.table(), "teacher_runs": self.teacher_runs, "runs": self.runs, "options": self.options}
        return {**d, "verdicts": {"checks": distill_checks(d)}}  # the checks

    json_name = "bench_distill.json"
    report = "distill_bench_html"
    tables_from = staticmethod(distill_tables)


def _ROW_ORDER(row: str) -> tuple[int, str]:  # noqa: N802
    for i, p in enumerate(("labels_only", "kd[", "multi_avg", "multi_weighted", "feature", "dkd", "dist",
                           "kd_zscore", "kd_trained", "kl_dp")):
        if row.startswith(p):
            return i, row
    return 99, row


def _mean(v: Sequence[float]) -> float | None:
    return float(np.mean(v)) if len(v) else None


def _sd(v: Sequence[float]) -> float | None:  # the sample sd (n − 1)
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def _median(v: Sequence[float | None]) -> float | None:
    w = [x for x in v if x is not None]
    return float(np.median(w)) if w else None


def _key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _split_labels(train: Any, share: float) -> tuple[Any, Any | None]:
    """(the labelled part: a class-stratified ``share``, the rest as unlabelled examples or None)."""
    if share >= 1.0:
        return train, None
    n = max(train.num_classes, int(round(share * len(train))))
    rng = np.random.default_rng(0)
    keep: list[int] = []
    for c in range(train.num_classes):  # stratified, deterministic
        idx = np.flatnonzero(train.labels == c)
        keep += rng.choice(idx, max(1, int(round(n * len(idx) / len(train)))), replace=False).tolist()
    keep_a = np.sort(np.array(keep))
    rest = np.setdiff1d(np.arange(len(train)), keep_a)
    return train.subset(keep_a), train.subset(rest)


def _checked(teachers: Sequence[str], students: Sequence[str], label_shares: Sequence[float],
             rows: Sequence[str] | None, seeds: Sequence[int], options: Sequence[str] = ()) -> tuple[str, ...]:
    """The row families to run, every argument checked before any work (``options``: the --option names)."""
    if not list(seeds):  # an empty --seeds '' would start work and end with no row
        raise TransferlabError("bench distill needs at least one seed (--seeds 0,1,2)")
    if len(teachers) < 2:
        raise TransferlabError("bench distill needs at least two teachers (multi-teacher rows, a weaker teacher)")
    if not students:
        raise TransferlabError("bench distill needs at least one student")
    wanted = tuple(rows) if rows else DEFAULT_ROWS
    unknown = [r for r in wanted if r not in ROWS] + [f"--option {m}" for m in options if m not in {*ROWS, "kl_dp"}]
    if unknown:  # a typo in --option's method: its options were silently unused
        raise TransferlabError(f"unknown bench distill row(s) {unknown}: choose from {', '.join(ROWS)} "
                               "(labels_only always runs; --option also takes kl_dp)")
    if any(not 0 < s <= 1 for s in label_shares):
        raise TransferlabError(f"label shares must lie in (0, 1], got {list(label_shares)}")
    return wanted


def bench_distill(
    *,
    out: str | Path,
    targets: Sequence[str] = TARGETS,
    teachers: Sequence[str] = TEACHERS,
    students: Sequence[str] = STUDENTS,
    seeds: Sequence[int] = (0, 1, 2),
    label_shares: Sequence[float] = LABEL_SHARES,
    epochs: int = 10,
    teacher_epochs: int | None = None,
    limit: int | None = 1000,
    test_limit: int | None = 500,
    image_size: int | None = 32,
    teacher_image_size: int | None = None,
    batch_size: int = 32,
    method_options: dict[str, dict[str, Any]] | None = None,
    rows: Sequence[str] | None = None,
    device: str | None = None,
    precision: str | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    progress: bool = False,
) -> DistillBenchResult:
    """Every method against the labels-only student (the module's docstring). ``limit``/``test_limit``: stratified
    samples of each target's splits; ``image_size``/``teacher_image_size``: the students'/teachers' input size;
    ``method_options``: ``{method or row family: {option: value}}``; ``rows``: families of :data:`ROWS` (default
    :data:`DEFAULT_ROWS`). ``backend``: ``local`` or ``ray`` (each run a Ray task of ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs at ``address``, default ``$RAY_ADDRESS``, else a local Ray); ``device``, ``precision``:
    each run's, on its machine. Teachers first, then the labels-only students, then the rows."""
    wanted = _checked(teachers, students, label_shares, rows, seeds, list(method_options or {}))
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)
    out_dir = Path(out)
    per_method = dict(method_options or {})
    t_epochs = teacher_epochs or epochs
    t_size = teacher_image_size or image_size
    common = {"out": str(out_dir), "limit": limit, "test_limit": test_limit, "batch_size": batch_size}
    settings = [(t, share) for t in targets for share in label_shares]
    rt = asked_runtime(device, precision) or None  # given only when asked: the folders' names stay as they were
    fits = {**common, **({"runtime": rt} if rt else {})}  # a teacher's and a labels-only student's
    t_training = _Training(t_epochs, t_size, batch_size, limit, test_limit, "multi_weighted" in wanted, rt)
    teacher_jobs = [Job(f"{_short(t)} {share:g}: teacher {_short(ref)}", teacher_run,
                        {"target": t, "share": share, "ref": ref, "epochs": t_epochs, "image_size": t_size,
                         **({"holdout": True} if t_training.holdout else {}), **fits},
                        needs=(_model_dir(out_dir, "teacher", t_training.key("teacher", target=t, share=share,
                                                                             ref=ref)),))
                    for t, share in settings for ref in teachers]
    teacher_runs = run_jobs(teacher_jobs, bench="distill-teacher", version=FORMAT, cache=out_dir / "runs",
                            progress=progress, backend=runner, device=device, precision=precision,
                            figure=lambda r: f"test accuracy {fmt(r['test_accuracy'])}")
    s_training = _Training(epochs, image_size, batch_size, limit, test_limit, runtime=rt)
    base_jobs = [Job(f"{_short(t)} {share:g}: {_short(sref)} seed {seed} labels only", labels_only_run,
                     {"target": t, "share": share, "student": sref, "seed": seed, "epochs": epochs,
                      "image_size": image_size, **fits},
                     needs=(_model_dir(out_dir, "student", s_training.key("labels_only", target=t, share=share,
                                                                          student=sref, seed=seed)),))
                 for t, share in settings for sref in students for seed in seeds]
    runs = run_jobs(base_jobs, bench="distill-labels-only", version=FORMAT, cache=out_dir / "runs",
                    progress=progress, backend=runner, device=device, precision=precision,
                    figure=lambda r: f"test accuracy {fmt(r['test_accuracy'])}")
    plan = _Plan(tuple(teachers), tuple(students), tuple(seeds), wanted, per_method)
    jobs = [job for (t, share), trecs in zip(settings, _chunks(teacher_runs, len(teachers)), strict=True)
            for job in _row_jobs(t, share, trecs, runs, plan, {"epochs": epochs, "image_size": image_size, **common})]
    runs += run_jobs(jobs, bench="distill", version=FORMAT, cache=out_dir / "runs", progress=progress,
                     backend=runner, device=device, precision=precision,
                     figure=lambda r: f"test accuracy {fmt(r['test_accuracy'])}")
    runs = [{k: v for k, v in r.items() if k != "dir"} for r in runs]
    teacher_runs = [{k: v for k, v in r.items() if k != "dir"} for r in teacher_runs]
    return DistillBenchResult(list(targets), list(teachers), list(students), list(seeds),
                              [float(s) for s in label_shares], runs, teacher_runs,
                              {"epochs": epochs, "teacher_epochs": t_epochs, "limit": limit, "test_limit": test_limit,
                               "image_size": image_size, "teacher_image_size": t_size, "batch_size": batch_size,
                               "method_options": per_method, "rows": list(wanted)})


@dataclass(frozen=True)
class _Plan:
    """What a bench runs in every (target, label share): teachers, students, seeds, row families, options."""

    teachers: Sequence[str]
    students: Sequence[str]
    seeds: Sequence[int]
    wanted: Sequence[str]
    per_method: dict[str, dict[str, Any]]


def _row_jobs(t: str, share: float, trecs: list[dict[str, Any]], bases: list[dict[str, Any]], plan: _Plan,
              common: dict[str, Any]) -> list[Job]:
    """The distillation rows of one (target, label share): ``trecs`` its teachers' records, ``bases`` the
    labels-only students' records; ``common``: the arguments every row shares."""
    teachers, students, seeds, wanted, per_method = (plan.teachers, plan.students, plan.seeds, plan.wanted,
                                                     plan.per_method)
    tdirs = [r["dir"] for r in trecs]
    tval = [r["val_accuracy"] or 0.0 for r in trecs]
    order = sorted(range(len(teachers)), key=lambda i: (-tval[i], i))  # ties: the first is the stronger
    strong, weak = _short(teachers[order[0]]), _short(teachers[order[-1]])
    jobs = []
    for sref in students:
        for seed in seeds:
            base = next(r for r in bases if (r["target"], r["label_share"], r["student"], r["seed"])
                        == (t, share, sref, seed))["dir"]
            plan = [(f"kd[{_short(x)}]", "kd", [tdirs[i]], sref) for i, x in enumerate(teachers)]
            plan += [("multi_avg", "multi_avg", tdirs, sref), ("multi_weighted", "multi_weighted", tdirs, sref),
                     (f"feature[{strong}]", "feature", [tdirs[order[0]]], sref),
                     (f"dkd[{strong}]", "dkd", [tdirs[order[0]]], sref),
                     (f"dist[{strong}]", "dist", [tdirs[order[0]]], sref),
                     (f"kd_zscore[{strong}]", "kd", [tdirs[order[0]]], sref),
                     (f"kd_trained[{weak}]", "kd", [tdirs[order[-1]]], base),
                     (f"kl_dp_trained[{weak}]", "kl_dp", [tdirs[order[-1]]], base)]
            for row, method, tds, start in plan:
                family = row.split("[")[0]  # the row's family: its label before the teacher
                if family not in wanted:
                    continue
                own = {"kd_zscore": ZSCORE_OPTIONS, "dist": DIST_OPTIONS}.get(family, {})  # the user's options win
                opts = {**(per_method.get(method, {}) if family != method else {}), **own, **per_method.get(family, {})}
                args = {"target": t, "share": share, "student": sref, "seed": seed, "row": row, "method": method,
                        "options": opts, **common}
                key = {**{k: v for k, v in args.items() if k != "out"}, "teachers": [Path(d).name for d in tds],
                       "start": Path(start).name}
                jobs.append(Job(f"{_short(t)} {share:g}: {_short(sref)} seed {seed} {row}", distill_run,
                                {**args, "teacher_dirs": tds, "student_ref": start, "fresh": start == sref},
                                key=key))
    return jobs


def _chunks(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def _samples(target: str, share: float, limit: int | None, test_limit: int | None) -> tuple[Any, Any, Any]:
    """(the labelled part, the unlabelled rest or None, the test sample) of a target at a label share."""
    from ..data import load_dataset

    train, test = load_dataset(target, "train"), load_dataset(target, "test")
    if limit and limit < len(train):
        train = train.stratified_sample(limit, seed=0)
    if test_limit and test_limit < len(test):
        test = test.stratified_sample(test_limit, seed=0)
    labelled, unlabelled = _split_labels(train, share)
    return labelled, unlabelled, test


def _model_dir(out: Path, name: str, key: str) -> str:
    return str(out / "models" / f"{name}-{key}" / "model.safetensors")


@dataclass(frozen=True)
class _Training:
    """How a teacher or a labels-only student is fine-tuned, and on which sample (its folder key's other parts)."""

    epochs: int
    image_size: int | None
    batch_size: int
    limit: int | None
    test_limit: int | None
    holdout: bool = False  # a teacher: fitted without the 10 % hold-out (:func:`_heldout`)
    runtime: dict[str, str] | None = None  # the device and precision the bench was asked for: a folder of its own

    def key(self, kind: str, **parts: Any) -> str:
        """The folder key of a ``kind`` model fitted so on ``parts`` (target, share, the model, a student's seed)."""
        return _key(kind=kind, **parts, epochs=self.epochs, image_size=self.image_size, batch_size=self.batch_size,
                    limit=self.limit, test_limit=self.test_limit, **({"holdout": True} if self.holdout else {}),
                    **(self.runtime or {}))


def _heldout(labelled: Any) -> tuple[Any, Any]:
    """(the labelled part less a stratified 10 %, that 10 %: multi_weighted scores teachers fitted without it)."""
    from ..data import split_validation

    return split_validation(labelled, 0.1, 0)


def _fitted(d: Path, ref: str, labelled: Any, test: Any, training: _Training, *, seed: int,
            record: dict[str, Any]) -> dict[str, Any]:
    """``ref`` fine-tuned on the labelled part into ``d`` (as ``training`` says), with its test accuracy, parameters
    and latency added to ``record`` (and ``dir``: where later jobs find it)."""
    from ..distill import latency_ms
    from ..fit import fit
    from ..models import load_classifier

    t0 = time.perf_counter()
    r = fit(labelled, ref, "finetune", epochs=training.epochs, image_size=training.image_size,
            batch_size=training.batch_size, seed=seed, out=d, overwrite=True)  # no test split here: no report to draw; tested below
    member = load_classifier(d, labelled)  # a frozen copy, to test and time it
    acc, best = _accuracy(member, test), r.metrics.get("best_epoch")
    last = acc if best in (None, r.metrics.get("epochs")) else None  # fit keeps only the selected weights
    return {**record, "test_accuracy": acc, "val_accuracy": r.metrics["val_accuracy"], "selected_epoch": best,
            "last_epoch_test_accuracy": last,
            "params": member.params, "ms_per_image": latency_ms(member, test), "seconds": time.perf_counter() - t0,
            "dir": str(d)}


def teacher_run(out: str, target: str, share: float, ref: str, epochs: int, image_size: int | None,
                batch_size: int, limit: int | None, test_limit: int | None, holdout: bool = False,
                runtime: dict[str, str] | None = None) -> dict[str, Any]:
    """A teacher fine-tuned on the labelled part (a job of the harness): test accuracy, parameters, latency."""
    labelled, _, test = _samples(target, share, limit, test_limit)
    training = _Training(epochs, image_size, batch_size, limit, test_limit, holdout, runtime)
    key = training.key("teacher", target=target, share=share, ref=ref)
    labelled = _heldout(labelled)[0] if holdout else labelled
    return _fitted(Path(out) / "models" / f"teacher-{key}", ref, labelled, test, training, seed=0,
                   record={"target": target, "label_share": share, "teacher": ref})


def _accuracy(member: Any, test: Any) -> float:
    return float(np.mean(member.logits(test, 64).argmax(1) == np.asarray(test.labels)))


def labels_only_run(out: str, target: str, share: float, student: str, seed: int, epochs: int,
                    image_size: int | None, batch_size: int, limit: int | None, test_limit: int | None,
                    runtime: dict[str, str] | None = None) -> dict[str, Any]:
    """The student fine-tuned on the labelled part alone (a job): every row's comparison, ``*_trained``'s start."""
    labelled, _, test = _samples(target, share, limit, test_limit)
    training = _Training(epochs, image_size, batch_size, limit, test_limit, runtime=runtime)
    key = training.key("labels_only", target=target, share=share, student=student, seed=seed)
    return _fitted(Path(out) / "models" / f"student-{key}", student, labelled, test, training, seed=seed,
                   record={"target": target, "label_share": share, "student": student, "seed": seed,
                           "row": "labels_only"})


def distill_run(out: str, target: str, share: float, student: str, seed: int, epochs: int, image_size: int | None,
                batch_size: int, limit: int | None, test_limit: int | None, row: str, method: str,
                teacher_dirs: list[str], student_ref: str, fresh: bool, options: dict[str, Any]) -> dict[str, Any]:
    """One distillation row (a job of the harness): a fresh student, or the labels-only one (``fresh`` False)."""
    from ..distill import distill

    labelled, unlabelled, test = _samples(target, share, limit, test_limit)
    t0 = time.perf_counter()
    r = distill(labelled, teacher_dirs, student_ref if fresh else Path(student_ref), method, unlabelled=unlabelled,
                heldout=_heldout(labelled)[1] if method == "multi_weighted" else None, test=test, epochs=epochs,
                batch_size=batch_size, image_size=image_size if fresh else None, seed=seed, **options)
    m = r.metrics
    return {"target": target, "label_share": share, "student": student, "seed": seed, "row": row, "method": method,
            "test_accuracy": m["test_accuracy"], "start_test_accuracy": m.get("start_test_accuracy"),
            "last_epoch_test_accuracy": m.get("last_epoch_test_accuracy"), "selected_epoch": m.get("selected_epoch"),
            "transfer_delta": m.get("transfer_delta"), "knowledge_gain": m.get("knowledge_gain"),
            "knowledge_loss": m.get("knowledge_loss"), "teacher_weights": m.get("teacher_weights"),
            "params": m["student_params"], "ms_per_image": m.get("student_ms_per_image"),
            "teacher_ms_per_image": m.get("teacher_ms_per_image"), "n_labelled": m["n_train"] + m["n_val"],
            "n_unlabelled": m["n_unlabelled"], "seconds": time.perf_counter() - t0}
