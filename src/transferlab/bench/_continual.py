"""``bench continual``: every continual strategy on the built-in task-incremental stream (the four built-in targets)
and on class-incremental Fashion-MNIST (5 × 2 classes), or on the streams given (``builtin:stream-long``, its class
split ``builtin:stream-long:12``): ACC, BWT, FWT, the whole run's time and each task's learning time (seconds per
task: the accuracy matrix's measurements left out), peak memory, the extra parameters each task adds and the bytes a
strategy keeps per class and for all classes together. Supermask strategies need the task at test time, so they run on task-incremental streams
only (said in the output). Every run is a job of the bench harness, cached in ``out/runs/<key>.json``: a bench resumes run by run."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import TransferlabError
from ._harness import Job, backend_of, check_option_names, fmt, run_jobs
from ._result import DeclaredResult
from ._tables import continual_tables

TASK_STREAM = "builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures"
CLASS_SPLIT = "builtin:fashion-mnist:5"
FORMAT = 2  # of the cached runs: raise it when a run's record changes (2: seconds per task, bytes per class)


@dataclass
class ContinualBenchResult(DeclaredResult):
    model: str
    streams: list[str]
    strategies: list[str]
    seeds: list[int]
    runs: list[dict[str, Any]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """Per (stream, strategy): ACC, BWT, FWT (mean ± sd over seeds), seconds, peak memory, extra parameters."""
        out = []
        for stream in self.streams:
            for s in self.strategies:
                rs = [r for r in self.runs if r["stream"] == stream and r["strategy"] == s]
                if not rs:
                    continue
                row: dict[str, Any] = {"stream": stream, "strategy": s, "n": len(rs)}
                for k in ("acc", "bwt", "fwt"):
                    v = [r[k] for r in rs if r.get(k) is not None]
                    row[k] = float(np.mean(v)) if v else None
                    row[f"{k}_sd"] = float(np.std(v, ddof=1)) if len(v) > 1 else None
                row["seconds"] = float(np.mean([r["seconds"] for r in rs]))
                row["seconds_per_task"] = _mean([r.get("seconds_per_task") for r in rs])
                row["eval_seconds"] = _mean([r.get("eval_seconds") for r in rs])
                row["bytes_per_class"] = rs[0].get("bytes_per_class")
                row["shared_bytes"] = rs[0].get("shared_bytes")
                row["peak_mb"] = float(np.max([r["peak_mb"] for r in rs]))
                row["peak_growth_mb"] = float(np.max([r.get("peak_growth_mb", 0.0) for r in rs]))
                row["extra_params_per_task"] = rs[0]["extra_params_per_task"]
                row["mask_bits_per_task"] = rs[0].get("mask_bits_per_task", 0)
                out.append(row)
        return out

    def _data(self) -> dict[str, Any]:
        return {"transferlab_version": __version__, "model": self.model, "streams": self.streams,
                "strategies": self.strategies, "seeds": self.seeds, "table": self.table(), "skipped": self.skipped,
                "runs": self.runs, "options": self.options}

    json_name = "bench_continual.json"
    report = "continual_bench_html"
    tables_from = staticmethod(continual_tables)


class _PeakRss:
    """The largest resident set size (MB) seen while the block runs, sampled every 50 ms from /proc (Linux); the
    process's lifetime peak elsewhere."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _now() -> float:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
        except (OSError, ValueError, IndexError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._now())

    def __enter__(self) -> _PeakRss:
        self.start = self.peak = self._now()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._now())


def bench_continual(
    model: str,
    *,
    out: str | Path,
    streams: Sequence[str] = (TASK_STREAM, CLASS_SPLIT),
    strategies: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    epochs: int = 3,
    limit: int | None = 500,
    test_limit: int | None = 500,
    image_size: int | None = 32,
    batch_size: int = 32,
    lr: float | None = None,
    strategy_options: dict[str, dict[str, Any]] | None = None,
    device: str | None = None,
    precision: str | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    progress: bool = False,
) -> ContinualBenchResult:
    """Every strategy (default: all) on each stream (comma-separated datasets: task-incremental; ``DATA:K``: a class
    split), per seed. ``limit``/``test_limit``: class-stratified samples of each task's splits. ``backend``:
    ``local`` (one run after the other, here) or ``ray`` (each run a Ray task of ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs on the cluster at ``address``, default ``$RAY_ADDRESS``, else a local Ray);
    ``device`` and ``precision``: where and how each run computes, on the machine it runs on."""
    from ..continual import list_strategies

    if not list(seeds):  # an empty --seeds '' would start work and end with no row
        raise TransferlabError("bench continual needs at least one seed (--seeds 0,1,2)")
    known = list_strategies()
    strats = list(strategies or known)
    unknown = [s for s in strats if s not in known]
    if unknown:
        raise TransferlabError(f"unknown continual strategy(ies) {', '.join(unknown)}; known: {', '.join(known)}")
    check_option_names(strategy_options or {}, known, "continual strategy")
    per = dict(strategy_options or {})
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)
    jobs, skipped = [], []
    for stream in streams:
        is_split = _is_split(stream)
        for s in strats:
            if is_split and s in ("supsup", "exssnet"):
                skipped.append({"stream": stream, "strategy": s, "why": "supermasks need the task at test time "
                                                                        "(task-incremental streams only)"})
                continue
            jobs += [Job(f"{stream} {s} seed {seed}", continual_run,
                         {"stream": stream, "strategy": s, "seed": seed, "model": model, "epochs": epochs,
                          "limit": limit, "test_limit": test_limit, "image_size": image_size,
                          "batch_size": batch_size, "lr": lr, "options": per.get(s, {})}) for seed in seeds]
    runs = run_jobs(jobs, bench="continual", version=FORMAT, cache=Path(out) / "runs", progress=progress,
                    backend=runner, device=device, precision=precision,
                    figure=lambda r: f"ACC {fmt(r['acc'])}")
    return ContinualBenchResult(model, list(streams), strats, list(seeds), runs, skipped,
                                {"epochs": epochs, "limit": limit, "test_limit": test_limit, "image_size": image_size,
                                 "batch_size": batch_size, "lr": lr, "strategy_options": per})


def _mean(values: list[Any]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _is_split(stream: str) -> bool:
    return "," not in stream and stream.rsplit(":", 1)[-1].isdigit()


def continual_run(stream: str, strategy: str, seed: int, model: str, epochs: int, limit: int | None,
                  test_limit: int | None, image_size: int | None, batch_size: int, lr: float | None,
                  options: dict[str, Any]) -> dict[str, Any]:
    """One strategy on one stream (a job of the harness): ACC, BWT, FWT, the matrix, seconds, peak memory."""
    from ..continual import parse_stream, run

    split = _is_split(stream)
    parsed = parse_stream(None if split else stream, stream if split else None, limit=limit, test_limit=test_limit)
    t0 = time.perf_counter()
    with _PeakRss() as mem:
        r = run(parsed, model, strategy, epochs=epochs, lr=lr, batch_size=batch_size, image_size=image_size,
                seed=seed, **options)
    m = r.metrics
    return {"stream": stream, "strategy": strategy, "seed": seed, "acc": m["acc"], "bwt": m["bwt"], "fwt": m["fwt"],
            "accuracy_matrix": m["accuracy_matrix"], "before": m["before"], "seconds": time.perf_counter() - t0,
            "peak_mb": mem.peak, "peak_growth_mb": mem.peak - mem.start,
            "extra_params_per_task": m["extra_params_per_task"],
            "mask_bits_per_task": m.get("mask_bits_per_task", 0), "tasks": m["tasks"],
            "seconds_per_task": m["seconds_per_task"], "task_seconds": m["task_seconds"],
            "eval_seconds": m["eval_seconds"], "bytes_per_class": m.get("bytes_per_class"),
            "shared_bytes": m.get("shared_bytes")}
