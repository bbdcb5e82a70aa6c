"""PETALface against plain LoRA on a quality-mixed target (issue 34 item 2): builtin:fashion-mnist with half of the
training and of the test images heavily down-sampled (``transferlab.data._shifts.quality_mixed``: box-averaged to
1/4 of the side, 7 x 7, and blown up again); test accuracy per quality bucket (full resolution, down-sampled).
Prints a Markdown table and writes ``results.json`` into ``--out``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_petal.py --out runs/bench-petal \\
        --model builtin:small_resnet_fashion --limit 2000 --epochs 5 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def mixed(split: str, limit: int | None, share: float, factor: int) -> tuple[object, np.ndarray]:
    from transferlab.data import Dataset, load_dataset
    from transferlab.data._shifts import quality_mixed

    base = load_dataset("builtin:fashion_mnist", split)
    if limit:
        base = base.stratified_sample(limit, seed=0)
    images, low = quality_mixed(np.asarray(base.items), split, share, factor)
    return Dataset(f"fashion-mnist-quality-mixed-{split}", "image", images, base.labels, base.class_names,
                   split), low


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/bench-petal"))
    ap.add_argument("--model", default="builtin:small_resnet_fashion")
    ap.add_argument("--limit", type=int, default=2000, help="training examples (class-stratified)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--r", type=int, default=8, help="LoRA rank (each of PETAL's two sets has it)")
    ap.add_argument("--share", type=float, default=0.5, help="share of down-sampled images")
    ap.add_argument("--factor", type=int, default=4, help="down-sampling factor")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="lora,petal", help="of lora, lora2r (LoRA at twice the rank: PETAL's "
                    "parameter count), petal")
    args = ap.parse_args()

    from transferlab.fit import fit

    train, _ = mixed("train", args.limit, args.share, args.factor)
    test, low = mixed("test", None, args.share, args.factor)
    runs = {"lora": ("lora", {"r": args.r}), "lora2r": ("lora", {"r": 2 * args.r}),
            "petal": ("petal", {"r": args.r})}
    runs = {k: runs[k] for k in args.methods.split(",")}
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, (method, opts) in runs.items():
            t = time.perf_counter()
            r = fit(train, args.model, method, test=test, epochs=args.epochs, image_size=32, seed=seed, **opts)
            ok = r.test_predictions == test.labels
            rows[name].append({"seed": seed, "all": float(ok.mean()), "high": float(ok[~low].mean()),
                               "low": float(ok[low].mean()), "trainable": r.metrics["trainable_params"],
                               "seconds": time.perf_counter() - t})
            print(name, rows[name][-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "n_test_high": int((~low).sum()),
                                                       "n_test_low": int(low.sum()), "rows": rows}, indent=1))
    print(f"| method | trained parameters | all | full resolution ({int((~low).sum())}) | down-sampled "
          f"({int(low.sum())}) | per seed (high / low) |")
    print("|---|---|---|---|---|---|")
    for name, rs in rows.items():
        mean = {k: np.mean([x[k] for x in rs]) for k in ("all", "high", "low")}
        per = ", ".join(f"{x['high']:.3f} / {x['low']:.3f}" for x in rs)
        print(f"| {name} | {rs[0]['trainable']:,} | {mean['all']:.3f} | {mean['high']:.3f} | {mean['low']:.3f} | "
              f"{per} |")


if __name__ == "__main__":
    main()
