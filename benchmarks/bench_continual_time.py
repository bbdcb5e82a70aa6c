"""Time of the closed-form strategies against ExSSNeT's on the built-in 4-task stream (issue 31: "≤ 1/10 of its
time"), load-robust: per seed the strategies run one after the other in this one process (so they see the same
machine load within a minute), and each run records its wall seconds and its process CPU seconds (with one torch
thread, CPU seconds are what the run itself computed, whatever else the shared machine runs). The same settings as
``bench continual``'s defaults (3 epochs, 500 / 500 examples per task, 32 px, batch 32); ACC is printed to show that
the runs are the bench's. ``--ridge-search`` also times the decomposition ranpac's λ search rests on, for one task's
400 fitting examples × 2048 projected features: the thin SVD of the features (before 9904ef1) against the
eigendecomposition of their 400 × 400 Gram matrix (now).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual_time.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from transferlab.bench import TASK_STREAM
from transferlab.continual import parse_stream, run


def timed(stream: object, model: str, strategy: str, seed: int) -> dict[str, float]:
    """One run: ACC, BWT, wall and CPU seconds (this process: user + system), the run's own seconds per task."""
    w0, c0 = time.perf_counter(), time.process_time()
    m = run(stream, model, strategy, epochs=3, batch_size=32, image_size=32, seed=seed).metrics
    return {"strategy": strategy, "seed": seed, "acc": m["acc"], "bwt": m["bwt"],
            "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
            "seconds_per_task": m["seconds_per_task"]}


def ridge_search_decompositions(n: int = 400, m: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Median seconds of the thin SVD of an n × m matrix of ReLU features and of the Gram matrix + its eigh."""
    import torch

    g = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(n, 96, generator=g, dtype=torch.float64) @ torch.randn(96, m, generator=g,
                                                                                      dtype=torch.float64))
    out: dict[str, list[float]] = {"svd": [], "gram_eigh": []}
    for _ in range(repeats):
        t = time.perf_counter()
        torch.linalg.svd(h, full_matrices=False)
        out["svd"].append(time.perf_counter() - t)
        t = time.perf_counter()
        torch.linalg.eigh(h @ h.T)
        out["gram_eigh"].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--strategies", default="exssnet,prototype,ranpac")
    ap.add_argument("--model", default="builtin:small_resnet_shapes")
    ap.add_argument("--json", default=None, help="write every run here")
    ap.add_argument("--ridge-search", action="store_true", help="also time the λ search's decompositions")
    a = ap.parse_args()
    if a.ridge_search:
        t = ridge_search_decompositions()
        print(f"400 x 2048: thin SVD {t['svd']:.3f} s, Gram + eigh {t['gram_eigh']:.3f} s (median of 5)\n")
    stream = parse_stream(TASK_STREAM, None, limit=500, test_limit=500)
    names = a.strategies.split(",")
    runs = [timed(stream, a.model, s, int(seed)) for seed in a.seeds.split(",") for s in names]
    print(f"{TASK_STREAM}; seeds {a.seeds}; load average at the end {os.getloadavg()[0]:.2f}\n")
    print("| strategy | ACC | BWT | wall s | CPU s | s / task | wall ratio to exssnet | CPU ratio to exssnet |")
    print("|---|---|---|---|---|---|---|---|")
    ref = {k: np.mean([r[k] for r in runs if r["strategy"] == names[0]]) for k in ("wall_s", "cpu_s")}
    for s in names:
        rs = [r for r in runs if r["strategy"] == s]
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("acc", "bwt", "wall_s", "cpu_s", "seconds_per_task")}
        print(f"| {s} | {mean['acc']:.3f} | {mean['bwt']:+.3f} | {mean['wall_s']:.1f} | {mean['cpu_s']:.1f} | "
              f"{mean['seconds_per_task']:.2f} | {mean['wall_s'] / ref['wall_s']:.3f} | "
              f"{mean['cpu_s'] / ref['cpu_s']:.3f} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(runs, fh, indent=1)


if __name__ == "__main__":
    main()
