"""``bench merge``: fine-tune one base model on several tasks, merge the fits with every method, and measure each
merged network (with each task's own head) on each task's test split: absolute accuracy and accuracy normalised by
the individually fine-tuned model, next to the published ordering on ViT-B/32."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_files_atomic, write_json_atomic
from .._published import MERGE_PUBLISHED as PUBLISHED
from .._version import __version__
from ..errors import TransferlabError

ZERO = "base_with_heads"  # the pretrained network with each task's fine-tuned head (task arithmetic, lam = 0)
LAM_GRID = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
SPECTRAL_GRID = (0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)  # TSV-M and Iso-C tune their scale around 1 (Iso-C above it)
TUNABLE = {"task_arithmetic": LAM_GRID, "ties": LAM_GRID, "dare": LAM_GRID, "tsv": SPECTRAL_GRID,
           "iso": SPECTRAL_GRID}


@dataclass
class MergeBenchResult:
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

    def to_dict(self) -> dict[str, Any]:
        return {"transferlab_version": __version__, "model": self.model, "targets": self.targets, "tasks": self.names,
                "individual": self.individual, "merged": self.merged, "seconds": self.seconds,
                "rows": self.rows(), "published_vit_b32": PUBLISHED, "options": self.options}

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """bench_merge.json and report.html, written together or not at all."""
        from ..report import merge_bench_html

        written = write_files_atomic(out_dir, {
            "bench_merge.json": json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n",
            "report.html": merge_bench_html(self.to_dict())})
        return {"json": written["bench_merge.json"], "html": written["report.html"]}


def _short(ref: str) -> str:
    """A task name: the dataset's name (``builtin:fashion-mnist`` -> ``fashion_mnist``, a folder -> its name)."""
    import re

    name = Path(ref).name if Path(ref).exists() else ref.split(":", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "task"


def _fit_once(train: Any, test: Any, model: str, method: str, out: Path, *, epochs: int, image_size: int | None,
              seed: int, progress: bool) -> tuple[float, float]:
    """(test accuracy, seconds) of one fine-tune, reused from ``out`` when it already holds this exact fit."""
    from ..fit import fit

    want = {"model": model, "method": method, "epochs": epochs, "image_size": image_size, "seed": seed,
            "n_train": len(train), "n_test": len(test)}
    stamp = out / "bench_fit.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == want and (out / "metrics.json").is_file():
        m = json.loads((out / "metrics.json").read_text())
        return float(m["test_accuracy"]), float(m["train_seconds"])
    r = fit(train, model, method, test=test, out=out, overwrite=True, epochs=epochs, image_size=image_size,
            seed=seed, progress=progress)
    write_json_atomic(stamp, {"key": want})
    return float(r.metrics["test_accuracy"]), float(r.metrics["train_seconds"])


def bench_merge(
    model: str,
    targets: str | Sequence[str],
    *,
    out: str | Path,
    methods: str | Sequence[str] | None = None,
    fit_method: str = "finetune",
    epochs: int = 3,
    limit: int | None = None,
    test_limit: int | None = None,
    image_size: int | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    reset_norms: bool = False,
    tune: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> MergeBenchResult:
    """Fine-tune ``model`` on each target (``fit_method``, ``epochs``; fits cached in ``out/fits``), merge the fits
    with every method (default: all registered; data-dependent ones use each target's training sample), and evaluate
    every merged network with each task's head on that task's test split. ``limit``/``test_limit``: class-stratified
    samples of the splits. ``reset_norms``: every merged network's batch-norm statistics re-estimated on the training
    samples (see ``merge_models``). ``tune``: also pick ``lam`` of task_arithmetic, ties, dare (from ``LAM_GRID``),
    tsv and iso (from ``SPECTRAL_GRID``) by mean accuracy on the validation examples ``fit`` held out of each training
    sample (rows ``<method>+tuned``)."""
    from ..data import load_dataset
    from ..merge import MERGE_METHODS, merge_models
    from ..models import evaluate as evaluate_model

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
    opts = method_options or {}
    out = Path(out)
    trains, tests = [], []
    for t in ts:
        tr, te = load_dataset(t, "train"), load_dataset(t, "test")
        trains.append(tr.stratified_sample(limit, seed=seed) if limit and limit < len(tr) else tr)
        tests.append(te.stratified_sample(test_limit, seed=seed) if test_limit and test_limit < len(te) else te)
    individual: dict[str, float] = {}
    seconds: dict[str, float] = {}
    dirs = []
    for n, tr, te in zip(names, trains, tests, strict=True):
        d = out / "fits" / n
        individual[n], seconds[f"fit:{n}"] = _fit_once(tr, te, model, fit_method, d, epochs=epochs,
                                                       image_size=image_size, seed=seed, progress=progress)
        dirs.append(d)
    merged: dict[str, dict[str, float]] = {}
    for m in [ZERO, *ms]:
        name, o = (("task_arithmetic", {"lam": 0.0}) if m == ZERO else (m, dict(opts.get(m, {}))))
        data = trains if MERGE_METHODS.meta(name).get("needs_data") or reset_norms else None
        t0 = time.perf_counter()
        md = out / "merged" / m
        merge_models(name, model, dirs, md, data=data, names=names, overwrite=True, progress=progress,
                     reset_norms=reset_norms, **o)
        seconds[m] = time.perf_counter() - t0
        merged[m] = {n: float(evaluate_model(md, te, head=n)["accuracy"]) for n, te in zip(names, tests, strict=True)}
    tuned: dict[str, float] = {}
    if tune:
        from ..data import split_validation

        vals = [split_validation(tr, 0.1, seed)[1] for tr in trains]  # fit's own held-out examples
        if any(v is None for v in vals):
            raise TransferlabError("tune: a training sample is too small to hold out validation examples")
        for m in [x for x in ms if x in TUNABLE]:
            t0 = time.perf_counter()
            best: tuple[float, float] | None = None
            md = out / "tune" / m
            for lam in TUNABLE[m]:
                merge_models(m, model, dirs, md, data=trains if reset_norms else None, names=names, overwrite=True,
                             reset_norms=reset_norms, **{**opts.get(m, {}), "lam": lam})
                score = float(np.mean([evaluate_model(md, v, head=n)["accuracy"]
                                       for n, v in zip(names, vals, strict=True)]))
                if best is None or score > best[0]:
                    best = (score, lam)
            assert best is not None
            tuned[m] = best[1]
            merge_models(m, model, dirs, md, data=trains if reset_norms else None, names=names, overwrite=True,
                         reset_norms=reset_norms, **{**opts.get(m, {}), "lam": best[1]})
            seconds[f"{m}+tuned"] = time.perf_counter() - t0
            merged[f"{m}+tuned"] = {n: float(evaluate_model(md, te, head=n)["accuracy"])
                                    for n, te in zip(names, tests, strict=True)}
    options = {"fit_method": fit_method, "tuned_lam": tuned, "lam_grid": {m: list(TUNABLE[m]) for m in tuned} if tune else None, "epochs": epochs, "limit": limit, "test_limit": test_limit,
               "reset_norms": reset_norms,
               "image_size": image_size, "seed": seed, "method_options": opts,
               "n_train": {n: len(t) for n, t in zip(names, trains, strict=True)},
               "n_test": {n: len(t) for n, t in zip(names, tests, strict=True)}}
    return MergeBenchResult(model, ts, names, individual, merged, seconds, options=options)
