"""``bench merge``: fine-tune one base model on several tasks, merge the fits with every method, and measure each
merged network (with each task's own head) on each task's test split: absolute accuracy and accuracy normalised by
the individually fine-tuned model, next to the published ordering on ViT-B/32."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._published import MERGE_PUBLISHED as PUBLISHED
from .._version import __version__
from ..errors import TransferlabError
from ..train import chance_level
from ._harness import Job, backend_of, check_option_names, fmt, folder_key, run_jobs
from ._result import DeclaredResult
from ._tables import merge_tables

ZERO = "base_with_heads"  # the pretrained network with each task's fine-tuned head (task arithmetic, lam = 0)
LAM_GRID = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
SPECTRAL_GRID = (0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)  # TSV-M and Iso-C tune their scale around 1 (Iso-C above it)
FORMAT = 2  # of the cached fits and merges: raise it when a record changes (2: a fit's folder is named by its
# settings; a version-1 merge may be of another setting's fits, left in the one folder per task)
TUNABLE = {"task_arithmetic": LAM_GRID, "ties": LAM_GRID, "dare": LAM_GRID, "tsv": SPECTRAL_GRID,
           "iso": SPECTRAL_GRID}


@dataclass
class MergeBenchResult(DeclaredResult):
    model: str
    targets: list[str]
    names: list[str]
    individual: dict[str, float]  # task -> test accuracy of its own fine-tuned model
    merged: dict[str, dict[str, float]]  # method -> task -> test accuracy (its head on the merged network)
    seconds: dict[str, float]  # method -> merge time; "fit:<task>" -> fine-tuning time
    options: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per method (and the individual models): per-task accuracy, mean, normalised mean; best first."""
        out = []
        for m, acc in self.merged.items():
            vals = [acc[n] for n in self.names]
            norm = [acc[n] / self.individual[n] if self.individual[n] else float("nan") for n in self.names]
            out.append({"method": m, "accuracy": dict(acc), "mean": float(np.mean(vals)),
                        "normalized": float(np.mean(norm)), "seconds": self.seconds.get(m)})
        out.sort(key=lambda r: -r["mean"])
        ind = [self.individual[n] for n in self.names]
        return [{"method": "individual", "accuracy": dict(self.individual), "mean": float(np.mean(ind)),
                 "normalized": 1.0, "seconds": None}, *out]

    def warnings(self) -> list[str]:
        """Fits that did not learn their task: a merged accuracy normalised by theirs says nothing (issue 29: bench
        merge over fits at chance printed "normalised 1.24")."""
        chance = self.options.get("chance") or {}
        out = []
        for n in self.names:
            c = chance.get(n)
            if c is not None and self.individual[n] <= c + 0.05:
                out.append(f"the individual fit of {n} is at chance ({self.individual[n]:.3f}, chance {c:.3f}): "
                           f"normalised accuracies of {n} say nothing; fit longer or with another method first")
        return out

    def _data(self) -> dict[str, Any]:
        return {"transferlab_version": __version__, "model": self.model, "targets": self.targets, "tasks": self.names,
                "individual": self.individual, "merged": self.merged, "seconds": self.seconds,
                "rows": self.rows(), "published_vit_b32": PUBLISHED, "options": self.options,
                "warnings": self.warnings()}

    json_name = "bench_merge.json"
    report = "merge_bench_html"
    tables_from = staticmethod(merge_tables)


def _short(ref: str) -> str:
    """A task name: the dataset's name (``builtin:fashion-mnist`` -> ``fashion_mnist``, a folder -> its name)."""
    import re

    name = Path(ref).name if Path(ref).exists() else ref.split(":", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "task"


def _samples(targets: Sequence[str], limit: int | None, test_limit: int | None,
             seed: int) -> tuple[list[Any], list[Any]]:
    """Each target's training and test samples (class-stratified)."""
    from ..data import load_dataset

    trains, tests = [], []
    for t in targets:
        tr, te = load_dataset(t, "train"), load_dataset(t, "test")
        trains.append(tr.stratified_sample(limit, seed=seed) if limit and limit < len(tr) else tr)
        tests.append(te.stratified_sample(test_limit, seed=seed) if test_limit and test_limit < len(te) else te)
    return trains, tests


def merge_fit_run(target: str, model: str, method: str, out: str, epochs: int, image_size: int | None, seed: int,
                  limit: int | None, test_limit: int | None, fit_options: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """One task's fine-tune into ``out`` (a job of the harness): its test accuracy and seconds. ``fit_options`` go
    to ``fit`` (``lr``, ``batch_size``, ``max_length``, a method's options such as LoRA's ``r``)."""
    from ..fit import fit

    (train,), (test,) = _samples([target], limit, test_limit, seed)
    r = fit(train, model, method, test=test, out=out, overwrite=True, epochs=epochs, image_size=image_size,
            seed=seed, **(fit_options or {}))
    return {"test_accuracy": float(r.metrics["test_accuracy"]), "train_seconds": float(r.metrics["train_seconds"])}


def merge_run(method: str, model: str, fits: list[str], names: list[str], targets: list[str], out: str,
              options: dict[str, Any], reset_norms: bool, limit: int | None, test_limit: int | None, seed: int,
              tune: list[float] | None = None) -> dict[str, Any]:
    """Merge the fits with ``method`` into ``out`` and test every task's head on it (a job of the harness); with
    ``tune``, first pick ``lam`` from that grid by mean accuracy on the examples fit held out of each training sample.
    The record: per-task test accuracy, seconds, the lam chosen."""
    from ..data import split_validation
    from ..merge import MERGE_METHODS, merge_models
    from ..models import evaluate as evaluate_model

    trains, tests = _samples(targets, limit, test_limit, seed)
    name, o = ("task_arithmetic", {"lam": 0.0}) if method == ZERO else (method, dict(options))
    data = trains if MERGE_METHODS.meta(name).get("needs_data") or reset_norms else None
    t0 = time.perf_counter()
    lam = None
    if tune is not None:
        vals = [split_validation(tr, 0.1, seed)[1] for tr in trains]  # fit's own held-out examples
        if any(v is None for v in vals):
            raise TransferlabError("tune: a training sample is too small to hold out validation examples")
        scores = []
        for v in tune:
            merge_models(name, model, fits, out, data=trains if reset_norms else None, names=names, overwrite=True,
                         reset_norms=reset_norms, **{**o, "lam": v})
            scores.append(float(np.mean([evaluate_model(out, d, head=n)["accuracy"]
                                         for n, d in zip(names, vals, strict=True)])))
        lam = tune[int(np.argmax(scores))]  # the first of equal scores, as the grid's order
        o, data = {**o, "lam": lam}, trains if reset_norms else None
    merge_models(name, model, fits, out, data=data, names=names, overwrite=True, reset_norms=reset_norms, **o)
    seconds = time.perf_counter() - t0
    return {"accuracy": {n: float(evaluate_model(out, te, head=n)["accuracy"]) for n, te in zip(names, tests,
                                                                                             strict=True)},
            "seconds": seconds, "lam": lam}


def _checked(targets: str | Sequence[str], methods: str | Sequence[str] | None) -> tuple[list[str], list[str],
                                                                                     list[str]]:
    """(targets, their short names, methods), checked before any work: two targets or more, distinct; known
    methods (default: every registered one)."""
    from ..merge import MERGE_METHODS

    ts = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    if len(ts) < 2:
        raise TransferlabError("bench merge needs at least two targets (--targets a,b,...)")
    names = [_short(t) for t in ts]
    if len(set(names)) != len(names):
        raise TransferlabError(f"targets must differ: {', '.join(ts)}")
    ms = ([m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)) if methods else \
        MERGE_METHODS.list()
    for m in ms:
        MERGE_METHODS.entry(m)  # unknown: lists the known ones
    return ts, names, ms


def _fit_jobs(ts: list[str], names: list[str], out: Path, fit_kw: dict[str, Any],
              runtime: tuple[str | None, str | None]) -> tuple[list[Path], list[Job]]:
    """Each task's fit folder and job. One folder per task and settings (``runtime``: the device and precision asked
    for too): a fit of other settings never lands under this one's cached record. A fit whose model was removed is
    fitted again."""
    dirs = [out / "fits" / f"{n}-{folder_key({'target': t, **fit_kw}, *runtime)}" for t, n in zip(ts, names,
                                                                                                  strict=True)]
    return dirs, [Job(f"fit {n}", merge_fit_run, {"target": t, "out": str(d), **fit_kw}, key={"target": t, **fit_kw},
                      needs=(str(d / "model.safetensors"),)) for t, n, d in zip(ts, names, dirs, strict=True)]


def _keyed(job: Job, out: Path, fitted: dict[str, Any], runtime: tuple[str | None, str | None]) -> Job:
    """A merge job with its cache key (its options and the fits it merges) and its folder named by that key
    (``out/merged/<method>-<8 hex>``, ``out/tune/...``): a run of other settings in the same ``--out`` never
    leaves its merged network where this run's record points."""
    key = {**job.kwargs, **fitted, "out": None}
    folder = out / job.kwargs["out"] / f"{job.kwargs['method']}-{folder_key(key, *runtime)}"
    return Job(job.label, job.fn, {**job.kwargs, "out": str(folder)}, key=key)


#: fit's arguments that bench merge sets itself, for every fit, from its own options
_SET_BY_BENCH = ("dataset", "model", "method", "test", "out", "overwrite", "epochs", "image_size", "seed")


def _checked_options(fit_method: str, fit_options: dict[str, Any] | None,
                     method_options: dict[str, dict[str, Any]] | None) -> None:
    """Before any work: ``method_options`` only for merge methods (for no method they would be silently unused); no
    ``fit_options`` key that bench merge sets itself (a second value for a fit argument), and the fit method's own
    options known and well-typed (a typo fails now, not in every fit job)."""
    import inspect

    from .._registry import check_options
    from ..fit import METHODS, fit
    from ..merge import MERGE_METHODS

    check_option_names(method_options or {}, MERGE_METHODS.list(), "merge method")
    given = dict(fit_options or {})
    taken = [k for k in given if k in _SET_BY_BENCH]
    if taken:
        raise TransferlabError(f"fit option(s) {', '.join(taken)}: bench merge sets these for every fit itself; use "
                               "its own options (--model, --fit-method, --epochs, --image-size, --seed, --out)")
    own = inspect.signature(fit).parameters  # fit's arguments (lr, batch_size, ...): the rest are the method's
    check_options(fit_method, METHODS.get(fit_method), {k: v for k, v in given.items() if k not in own}, skip=2,
                  caller=("fit", fit))


def bench_merge(
    model: str,
    targets: str | Sequence[str],
    *,
    out: str | Path,
    methods: str | Sequence[str] | None = None,
    fit_method: str = "finetune",
    fit_options: dict[str, Any] | None = None,
    epochs: int = 3,
    limit: int | None = None,
    test_limit: int | None = None,
    image_size: int | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    reset_norms: bool = False,
    tune: bool = False,
    seed: int = 0,
    device: str | None = None,
    precision: str | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    progress: bool = False,
) -> MergeBenchResult:
    """Fine-tune ``model`` on each target (``fit_method``, ``epochs``; fits cached in ``out/fits``), merge the fits
    with every method (default: all registered; data-dependent ones use each target's training sample), and evaluate
    every merged network with each task's head on that task's test split. ``limit``/``test_limit``: class-stratified
    samples of the splits. ``reset_norms``: every merged network's batch-norm statistics re-estimated on the training
    samples (see ``merge_models``). ``tune``: also pick ``lam`` of task_arithmetic, ties, dare (from ``LAM_GRID``),
    tsv and iso (from ``SPECTRAL_GRID``) by mean accuracy on the validation examples ``fit`` held out of each training
    sample (rows ``<method>+tuned``). ``backend``: ``local`` (one run after the other, here) or ``ray`` (each
    run a Ray task of ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs on the cluster at ``address``, default
    ``$RAY_ADDRESS``, else a local Ray); ``device`` and ``precision``: where and how each run computes, on the
    machine it runs on. ``fit_options``: passed to every fit (e.g. ``{"lr": 3e-5}``: a smaller step keeps the task
    vectors nearer the base, as the merging papers fine-tune). The fits run first, then the merges."""
    ts, names, ms = _checked(targets, methods)
    _checked_options(fit_method, fit_options, method_options)
    opts = method_options or {}
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)
    out = Path(out)
    trains, tests = _samples(ts, limit, test_limit, seed)
    fit_kw: dict[str, Any] = {"model": model, "method": fit_method, "epochs": epochs, "image_size": image_size,
                              "seed": seed, "limit": limit, "test_limit": test_limit}
    if fit_options:  # only when given: the cache keys of earlier fits stay valid
        fit_kw["fit_options"] = dict(fit_options)
    dirs, fit_jobs = _fit_jobs(ts, names, out, fit_kw, (device, precision))
    fits = run_jobs(fit_jobs, bench="merge-fit", version=FORMAT, cache=out / "runs", progress=progress,
                    backend=runner, device=device, precision=precision,
                    figure=lambda r: f"test accuracy {fmt(r['test_accuracy'])}")
    individual = {n: r["test_accuracy"] for n, r in zip(names, fits, strict=True)}
    seconds = {f"fit:{n}": r["train_seconds"] for n, r in zip(names, fits, strict=True)}
    common = {"model": model, "fits": [str(d) for d in dirs], "names": names, "targets": ts,
              "reset_norms": reset_norms, "limit": limit, "test_limit": test_limit, "seed": seed}
    fitted = {"fits": fit_kw}  # a merge's record depends on the fits it merged
    jobs = [Job(f"merge {m}", merge_run, {"method": m, "out": "merged",
                                          "options": dict(opts.get(m, {})) if m != ZERO else {}, **common})
            for m in [ZERO, *ms]]
    tunable = [x for x in ms if x in TUNABLE] if tune else []
    jobs += [Job(f"tune {m}", merge_run, {"method": m, "out": "tune", "options": dict(opts.get(m, {})),
                                          "tune": list(TUNABLE[m]), **common}) for m in tunable]
    jobs = [_keyed(j, out, fitted, (device, precision)) for j in jobs]
    records = run_jobs(jobs, bench="merge", version=FORMAT, cache=out / "runs", progress=progress,
                       backend=runner, device=device, precision=precision,
                       figure=lambda r: f"mean accuracy {fmt(float(np.mean(list(r['accuracy'].values()))))}")
    merged, merge_dirs = {}, {}
    tuned: dict[str, float] = {}
    for j, r in zip(jobs, records, strict=True):
        m = j.kwargs["method"] + ("+tuned" if "tune" in j.kwargs else "")
        merged[m], seconds[m], merge_dirs[m] = r["accuracy"], r["seconds"], j.kwargs["out"]
        if "tune" in j.kwargs:
            tuned[j.kwargs["method"]] = r["lam"]
    options = {"fit_method": fit_method, "fit_options": dict(fit_options or {}),
               "fit_dirs": {n: str(d) for n, d in zip(names, dirs, strict=True)}, "tuned_lam": tuned,
               "lam_grid": {m: list(TUNABLE[m]) for m in tuned} if tune else None, "epochs": epochs, "limit": limit,
               "test_limit": test_limit, "reset_norms": reset_norms, "image_size": image_size, "seed": seed,
               "method_options": opts, "merge_dirs": merge_dirs,
               "n_train": {n: len(t) for n, t in zip(names, trains, strict=True)},
               "n_test": {n: len(t) for n, t in zip(names, tests, strict=True)},
               "chance": {n: chance_level(t.labels, t.num_classes) for n, t in zip(names, tests, strict=True)}}
    return MergeBenchResult(model, ts, names, individual, merged, seconds, options=options)
