"""The noise ceiling of a `bench rank --replicates 2` run that has not finished, from its ground-truth cache.

`bench rank` writes bench.json (with the noise ceiling) when every cell is done; the 4-target fine-tune table with
two replicates is 112 cells (hours on 2 cores). This reads the cells already cached under ``$TRANSFERLAB_CACHE``
(default ``/tmp/benchcache``) and prints, per target whose models all have both replicates, the weighted τ between
the two replicate ground truths (``transferlab.bench._evidence.noise_ceiling``, the bench's own function) and how far
the replicates' accuracies lie apart; and how many cells chose a learning rate at the grid's edge. A cell's final
value is its learning-rate extension's where it has one.

    .venv/bin/python benchmarks/bench_rank_partial_ceiling.py --protocol finetune --n-train 500
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path

import numpy as np


def cells(cache: Path, protocol: str, n_train: int) -> dict[tuple[str, str, int], dict]:
    out: dict[tuple[str, str, int], dict] = {}
    for f in sorted((cache / "ground_truth").glob("*.json")):
        d = json.loads(f.read_text())
        if d.get("protocol") != protocol or d.get("n_train") != n_train:
            continue
        key = (d["target"], d["model"], int(d.get("replicate", 0)))
        if key not in out or "lr_extension" in d:  # the extended cell supersedes the grid's
            out[key] = d
    return out


def main(argv: list[str] | None = None) -> int:
    from transferlab.bench._evidence import noise_ceiling

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TRANSFERLAB_CACHE", "/tmp/benchcache")))
    ap.add_argument("--protocol", default="finetune")
    ap.add_argument("--n-train", type=int, default=500)
    args = ap.parse_args(argv)
    by_target: dict[str, dict[str, dict[int, float]]] = collections.defaultdict(dict)
    found = cells(args.cache, args.protocol, args.n_train)
    for (target, model, rep), d in found.items():
        by_target[target].setdefault(model, {})[rep] = d["test_accuracy"]
    extended = sum("lr_extension" in d for d in found.values())
    edge = sum(bool(d.get("lr_at_grid_edge")) for d in found.values())
    print(f"{len(found)} cells cached: {extended} were at the grid's edge and tried more learning rates beyond it (--lr-extend); "
          f"{edge} ({edge / max(len(found), 1):.1%}) still at an edge after it\n")
    print("| target | models with both replicates | noise ceiling τw [95 % interval] | median / max |Δ accuracy| |")
    print("|---|---|---|---|")
    for target, models in sorted(by_target.items()):
        both = sorted(m for m, r in models.items() if 0 in r and 1 in r)
        if len(both) < 3:
            print(f"| {target} | {len(both)} of {len(models)} | (too few) | |")
            continue
        reps = [np.array([[models[m][r] for m in both]]) for r in (0, 1)]
        c = noise_ceiling(reps)
        d = np.abs(reps[0] - reps[1])[0]
        print(f"| {target} | {len(both)} of {len(models)} | {c['weighted_tau']:.3f} [{c['ci'][0]:.2f}, "
              f"{c['ci'][1]:.2f}] | {np.median(d):.3f} / {d.max():.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
