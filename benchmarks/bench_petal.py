"""PETALface against plain LoRA on a quality-mixed target (issue 34 item 2): builtin:fashion-mnist with half of the
training and of the test images heavily down-sampled (``transferlab.data._shifts.quality_mixed``: box-averaged to
1/4 of the side, 7 x 7, and blown up again); test accuracy per quality bucket (full resolution, down-sampled).
Methods: ``lora`` (rank r), ``lora2r`` (rank 2r: petal's trained parameters), ``petal`` (two sets of rank r, mixed by
the image-quality proxy), ``petal_half`` (two sets of rank r/2: lora's parameters), ``petal_column`` (two sets of rank
r mixed by a user quality column: the known 1 = full resolution, 0 = down-sampled of every training, validation and
test image); ``--spread``/``--center``: petal's mix (``w = clip(0.5 + spread (q - center), 0, 1)``). Prints a Markdown table (mean +- sd
over the seeds) and writes ``results.json`` into ``--out``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_petal.py --out runs/bench-petal \\
        --model builtin:small_resnet_fashion --limit 2000 --epochs 5 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def mixed(split: str, limit: int | None, share: float, factor: int,
          column: bool = False) -> tuple[object, np.ndarray]:
    """The quality-mixed split and its down-sampled mask; ``column``: with the mask as a quality column (1 - low)."""
    from transferlab.data import Dataset, load_dataset
    from transferlab.data._shifts import quality_mixed

    base = load_dataset("builtin:fashion_mnist", split)
    if limit:
        base = base.stratified_sample(limit, seed=0)
    images, low = quality_mixed(np.asarray(base.items), split, share, factor)
    meta = {"quality": (~low).astype(np.float32)} if column else {}
    return Dataset(f"fashion-mnist-quality-mixed-{split}", "image", images, base.labels, base.class_names,
                   split, meta), low


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
    ap.add_argument("--spread", type=float, default=1.0, help="petal's mixing spread (1: the quality itself)")
    ap.add_argument("--center", type=float, default=0.5, help="petal's center: the quality both sets weigh equally")
    ap.add_argument("--methods", default="lora,petal", help="of lora, lora2r (LoRA at twice the rank: PETAL's "
                    "parameter count), petal, petal_half (two sets of rank r/2), petal_column (mixed by the known "
                    "quality as a column)")
    args = ap.parse_args()

    from transferlab.fit import fit

    data = {c: (mixed("train", args.limit, args.share, args.factor, c), mixed("test", None, args.share, args.factor, c))
            for c in (False, True)}
    low = data[False][1][1]
    sp = {"spread": args.spread, "center": args.center}
    runs = {"lora": ("lora", {"r": args.r}, False), "lora2r": ("lora", {"r": 2 * args.r}, False),
            "petal": ("petal", {"r": args.r, **sp}, False), "petal_half": ("petal", {"r": args.r // 2, **sp}, False),
            "petal_column": ("petal", {"r": args.r, **sp}, True)}
    runs = {k: runs[k] for k in args.methods.split(",")}
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, (method, opts, column) in runs.items():
            (train, _), (test, _) = data[column]
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
        cell = {k: f"{np.mean([x[k] for x in rs]):.3f} ± {np.std([x[k] for x in rs], ddof=1) if len(rs) > 1 else 0:.3f}"
                for k in ("all", "high", "low")}
        per = ", ".join(f"{x['high']:.3f} / {x['low']:.3f}" for x in rs)
        print(f"| {name} | {rs[0]['trainable']:,} | {cell['all']} | {cell['high']} | {cell['low']} | {per} |")


if __name__ == "__main__":
    main()
