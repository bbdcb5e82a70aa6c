"""Benchmark: every ranking metric on a target with many classes and few examples per class (issue 11).

What it measures: an NPZ (``x`` float32 features [N, D], ``y`` labels, ``source_probs`` a source head's
probabilities [N, Cs] for LEEP/NCE) with ``--classes`` C classes of ``--per-class`` examples each (default 10,000 x 6,
D = 6) is written to a temporary folder and loaded back; then, for each metric, one fresh call of
``transferlab.rank.score(metric, x, y, source_probs)`` (nothing shared between metrics), timed with
``time.perf_counter``, and a second call under ``tracemalloc`` for the peak memory allocated during the call (numpy
reports its buffers to tracemalloc). kNN and the linear probe (cross-validated baselines) are reported separately,
only with ``--baselines``; the opt-in NLEEP and PED run only when named in ``--metrics``.

Exact command (repository root, project venv, one BLAS thread):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rank_classes.py

End to end, the whole command on the same file (what a user runs):

    .venv/bin/python benchmarks/bench_rank_classes.py --npz /tmp/classes.npz
    /usr/bin/time -v .venv/bin/transferlab rank /tmp/classes.npz --no-cache --out /tmp/classes-rank

Options: --classes 10000 --per-class 6 --dim 6 --source-classes 100 --metrics a,b --baselines --one-pass (time and
peak from the same traced call: half the run time, times inflated by tracing) --seed 0.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

BASELINES = ("knn", "linear_probe")


def make_npz(path: Path, classes: int, per_class: int, dim: int, source_classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    centres = rng.standard_normal((classes, dim))
    x = (centres[y] + 0.5 * rng.standard_normal((len(y), dim))).astype(np.float32)
    logits = rng.standard_normal((len(y), source_classes))
    logits += 3.0 * np.eye(source_classes)[y % source_classes]  # a source head that partly predicts the target
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    perm = rng.permutation(len(y))
    np.savez(path, x=x[perm], y=y[perm], source_probs=p[perm])


def run_metric(name: str, x: np.ndarray, y: np.ndarray, p: np.ndarray, one_pass: bool,
               **options: object) -> tuple[float, float, float]:
    """(seconds, peak MB, score) of one fresh ``score`` call."""
    from transferlab.rank import score

    if not one_pass:
        t = time.perf_counter()
        score(name, x, y, p, **options)
        seconds = time.perf_counter() - t
    tracemalloc.start()
    t = time.perf_counter()
    value = score(name, x, y, p, **options)
    traced = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return (traced if one_pass else seconds), peak, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=10000)
    ap.add_argument("--per-class", type=int, default=6)
    ap.add_argument("--dim", type=int, default=6)
    ap.add_argument("--source-classes", type=int, default=100)
    ap.add_argument("--metrics", default=None, help="comma-separated (default: the default set minus the baselines)")
    ap.add_argument("--baselines", action="store_true", help="also time knn and linear_probe")
    ap.add_argument("--one-pass", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--npz", type=Path, default=None, help="only write the NPZ there and exit (for the end-to-end "
                    "`transferlab rank FILE` row of docs/benchmarks.md)")
    args = ap.parse_args()
    if args.npz is not None:
        make_npz(args.npz, args.classes, args.per_class, args.dim, args.source_classes, args.seed)
        return

    from transferlab.rank import list_metrics, metric_info

    if args.metrics:
        names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    else:
        names = [m for m in list_metrics() if metric_info(m).get("default", True) and m not in BASELINES]
        if args.baselines:
            names += list(BASELINES)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classes.npz"
        make_npz(path, args.classes, args.per_class, args.dim, args.source_classes, args.seed)
        with np.load(path) as z:
            x, y, p = z["x"], z["y"], z["source_probs"]
        size_mb = path.stat().st_size / 2**20
    n = len(y)
    print(f"N = {n} ({args.classes} classes x {args.per_class}), D = {args.dim} float32, Cs = {args.source_classes}; "
          f"NPZ {size_mb:.1f} MB; {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print()
    print("| metric | seconds | peak MB | score |")
    print("|---|---:|---:|---:|")
    total_s = 0.0
    max_peak = 0.0
    for name in names:
        opts = {"source_mean": x.mean(0), "source_std": x.std(0)} if name == "ped" else {}  # its own statistics
        seconds, peak, value = run_metric(name, x, y, p, args.one_pass, **opts)
        total_s += seconds
        max_peak = max(max_peak, peak)
        print(f"| {name} | {seconds:.2f} | {peak:.1f} | {value:.6g} |", flush=True)
    print(f"| **total** | **{total_s:.2f}** | **{max_peak:.1f}** (max) | |")


if __name__ == "__main__":
    main()
