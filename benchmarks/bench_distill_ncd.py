"""Novel-class discovery with and without class-relation distillation (issue 33 item 5), on a built-in split:
builtin:digits with 0-4 known (labelled) and 5-9 novel (their labels hidden), over seeds. Prints and writes one JSON
record per (seed, kd_weight): clustering accuracy (Hungarian) on the test split's novel-class examples and the known
head's accuracy on its known-class examples.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_distill_ncd.py --out runs/bench-distill-ncd.json

Both arms of a seed share everything up to the discovery run (the same pretraining on the known classes, seeded
alike); only the class-relation term differs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from transferlab._io import write_json_atomic

#: the settings a saved record may differ in from this run's: the grid it is part of, and where it is written
_GRID = ("seeds", "kd_weights", "out")


def _resumable(done: list[dict[str, Any]], settings: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """The saved records, when every one was made with this run's settings (apart from the grid): resuming on
    (seed, kd_weight) alone would mix two settings in one table. Otherwise the run is refused."""
    want = {k: v for k, v in settings.items() if k not in _GRID}
    for r in done:
        saved = {k: v for k, v in (r.get("settings") or {}).items() if k not in _GRID}
        differ = sorted(k for k in {*want, *saved} if want.get(k) != saved.get(k))
        if differ:
            said = ", ".join(f"{k}: saved {saved.get(k)!r}, now {want.get(k)!r}" for k in differ)
            raise SystemExit(f"{out} holds records made with other settings ({said}): give another --out, or "
                             "remove the file to start again")
    return done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench-distill-ncd.json")
    ap.add_argument("--student", default="builtin:small_resnet_shapes")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--kd-weights", default="0,0.1")
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--known-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--kd-temperature", type=float, default=4.0)  # the reference's (every config of Cr-KD-NCD)
    a = ap.parse_args()
    from transferlab.distill._ncd import discover

    out = Path(a.out)
    done = _resumable(json.loads(out.read_text()) if out.exists() else [], vars(a), out)
    for seed in [int(s) for s in a.seeds.split(",")]:
        for kd in [float(w) for w in a.kd_weights.split(",")]:
            if any(r["seed"] == seed and r["kd_weight"] == kd for r in done):
                continue
            t0 = time.perf_counter()
            m = discover("builtin:digits", ["5", "6", "7", "8", "9"], a.student, kd_weight=kd,
                         kd_temperature=a.kd_temperature,
                         known_epochs=a.known_epochs, epochs=a.epochs, image_size=a.image_size, limit=a.limit,
                         seed=seed).metrics
            rec = {"seed": seed, "kd_weight": kd, "novel_cluster_accuracy": m["novel_cluster_accuracy"],
                   "known_accuracy": m["known_accuracy"], "n_known": m["n_known"], "n_unlabelled": m["n_unlabelled"],
                   "n_test_novel": m["n_test_novel"], "seconds": time.perf_counter() - t0,
                   # the last discovery epoch's means: the swapped-prediction loss, the class-relation term and the
                   # known classes' probability mass on unlabelled examples (the term's weight before normalising)
                   **{k: m["history"][-1].get(f"train_{k}") for k in ("swapped", "relation_kd", "relation_weight",
                                                                       "relation_target_entropy")},
                   "settings": vars(a)}
            print(json.dumps({k: v for k, v in rec.items() if k != "settings"}), flush=True)
            done.append(rec)
            write_json_atomic(out, done)
    for kd in sorted({r["kd_weight"] for r in done}):
        acc = [r["novel_cluster_accuracy"] for r in done if r["kd_weight"] == kd]
        known = [r["known_accuracy"] for r in done if r["kd_weight"] == kd]
        print(f"kd_weight {kd:g}: novel clustering accuracy {np.mean(acc):.3f} ± {np.std(acc, ddof=1) if len(acc) > 1 else 0:.3f}"
              f" (n={len(acc)}), known accuracy {np.mean(known):.3f}")


if __name__ == "__main__":
    main()
