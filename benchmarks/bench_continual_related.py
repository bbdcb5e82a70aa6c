"""Backward transfer on a stream of related tasks (issue 31): ``gpm`` against ``cuber``.

The stream: three tasks that are disjoint random samples of Fashion-MNIST's training split (``--per-task`` examples
each, the same ten classes and labels; a seeded permutation), each with its own head and all tested on the same
class-stratified ``--test-limit`` test examples. The tasks are as related as tasks get (one distribution), so a later
task's gradient lies in an earlier task's input subspace and agrees with its descent: where GPM blocks that subspace,
CUBER may open it, and an earlier task can gain from a later one (BWT > 0).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual_related.py --threshold 0.99
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from transferlab.continual import Stream, Task, run
from transferlab.data import load_dataset


def related_stream(ref: str, sizes: list[int], test_limit: int, seed: int = 0) -> Stream:
    train, test = load_dataset(ref, "train"), load_dataset(ref, "test")
    test = test.stratified_sample(test_limit, seed=0) if test_limit < len(test) else test
    order = np.random.default_rng(seed).permutation(len(train))
    tasks, start = [], 0
    for k, n in enumerate(sizes):
        part = train.subset(np.sort(order[start:start + n]))
        tasks.append(Task(f"part{k}", part, test, list(range(train.num_classes)), list(train.class_names)))
        start += n
    return Stream("task", tasks, source={"stream": f"{ref}: {len(sizes)} disjoint samples of {sizes} examples"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="builtin:fashion-mnist")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--per-task", type=int, default=300)
    ap.add_argument("--test-limit", type=int, default=300)
    ap.add_argument("--threshold", type=float, default=0.97)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default="builtin:small_resnet_shapes")
    ap.add_argument("--json", default=None, help="write every run's metrics here")
    a = ap.parse_args()
    stream = related_stream(a.data, [a.per_task] * a.tasks, a.test_limit)
    rows, runs = [], []
    for name in ("gpm", "cuber"):
        acc, bwt = [], []
        for seed in (int(s) for s in a.seeds.split(",")):
            t0 = time.perf_counter()
            m = run(stream, a.model, name, epochs=a.epochs, image_size=32, seed=seed, threshold=a.threshold).metrics
            acc.append(m["acc"])
            bwt.append(m["bwt"])
            runs.append({"strategy": name, "seed": seed, "acc": m["acc"], "bwt": m["bwt"], "seconds":
                         time.perf_counter() - t0, "accuracy_matrix": m["accuracy_matrix"], "opened": m.get("opened")})
        rows.append(f"| {name} | {np.mean(acc):.3f} ± {np.std(acc, ddof=1):.3f} | {100 * np.mean(bwt):+.1f} ± "
                    f"{100 * np.std(bwt, ddof=1):.1f} | {' '.join(f'{100 * b:+.1f}' for b in bwt)} |")
    print(f"{stream.source['stream']}; threshold {a.threshold}, {a.epochs} epochs, seeds {a.seeds}\n")
    print("| strategy | ACC | BWT (points) | BWT per seed |\n|---|---|---|---|")
    print("\n".join(rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(runs, fh, indent=1)


if __name__ == "__main__":
    main()
