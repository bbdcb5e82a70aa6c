"""PETALface against plain LoRA on a quality-mixed target (issue 34 item 2): a built-in image target (``--target``,
builtin:fashion-mnist by default; shapes, textures) with a share of the training and of the test images heavily
down-sampled (``transferlab.data._shifts.quality_mixed``: box-averaged to 1/4 of the side, 7 x 7, and blown up
again); test accuracy per quality bucket (full resolution, down-sampled), and each method's paired difference from
the lora rows over the seeds.
Methods: ``lora`` (rank r), ``lora2r`` (rank 2r: petal's trained parameters), ``petal`` (two sets of rank r, mixed by
the image-quality proxy), ``petal_half`` (two sets of rank r/2: lora's parameters), ``petal_column`` (two sets of rank
r mixed by a user quality column: the known 1 = full resolution, 0 = down-sampled of every training, validation and
test image); ``lora_hq`` / ``lora_lq``: lora trained on the full-resolution / down-sampled training images only
(how much one quality teaches the other: the shift's conflict); ``--spread``/``--center``: petal's mix
(``w = clip(0.5 + spread (q - center), 0, 1)``). Prints a Markdown table (mean +- sd over the seeds) and writes
``results.json`` into ``--out``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_petal.py --out runs/bench-petal \\
        --model builtin:small_resnet_fashion --limit 2000 --epochs 5 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def mixed(target: str, split: str, limit: int | None, share: float, factor: int,
          column: bool = False) -> tuple[object, np.ndarray]:
    """The quality-mixed split and its down-sampled mask; ``column``: with the mask as a quality column (1 - low)."""
    from transferlab.data import Dataset, load_dataset
    from transferlab.data._shifts import quality_mixed

    base = load_dataset(target, split)
    if limit and limit < len(base):
        base = base.stratified_sample(limit, seed=0)
    images, low = quality_mixed(np.asarray(base.items), split, share, factor)
    meta = {"quality": (~low).astype(np.float32)} if column else {}
    name = target.removeprefix("builtin:").replace("_", "-")
    return Dataset(f"{name}-quality-mixed-{split}", "image", images, base.labels, base.class_names,
                   split, meta), low


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/bench-petal"))
    ap.add_argument("--model", default="builtin:small_resnet_fashion")
    ap.add_argument("--target", default="builtin:fashion_mnist", help="a built-in image target")
    ap.add_argument("--limit", type=int, default=2000, help="training examples (class-stratified)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--r", type=int, default=8, help="LoRA rank (each of PETAL's two sets has it)")
    ap.add_argument("--share", type=float, default=0.5, help="share of down-sampled training images")
    ap.add_argument("--test-share", type=float, default=None, help="share of down-sampled test images (--share)")
    ap.add_argument("--factor", type=int, default=4, help="down-sampling factor")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--spread", type=float, default=1.0, help="petal's mixing spread (1: the quality itself)")
    ap.add_argument("--center", type=float, default=0.5, help="petal's center: the quality both sets weigh equally")
    ap.add_argument("--methods", default="lora,petal", help="of lora, lora2r (LoRA at twice the rank: PETAL's "
                    "parameter count), petal, petal_half (two sets of rank r/2), petal_column (mixed by the known "
                    "quality as a column), lora_hq, lora_lq (lora on one quality of the training images only)")
    args = ap.parse_args()

    from transferlab.fit import fit

    test_share = args.share if args.test_share is None else args.test_share
    data = {c: (mixed(args.target, "train", args.limit, args.share, args.factor, c),
                mixed(args.target, "test", None, test_share, args.factor, c)) for c in (False, True)}
    low = data[False][1][1]
    sp = {"spread": args.spread, "center": args.center}
    runs = {"lora": ("lora", {"r": args.r}, False), "lora2r": ("lora", {"r": 2 * args.r}, False),
            "petal": ("petal", {"r": args.r, **sp}, False), "petal_half": ("petal", {"r": args.r // 2, **sp}, False),
            "petal_column": ("petal", {"r": args.r, **sp}, True),
            "lora_hq": ("lora", {"r": args.r}, False, "high"), "lora_lq": ("lora", {"r": args.r}, False, "low")}
    runs = {k: runs[k] for k in args.methods.split(",")}
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, (method, opts, column, *only) in runs.items():
            (train, train_low), (test, _) = data[column]
            if only:  # trained on one quality of the training images only (how much one quality teaches the other)
                train = train.subset(np.flatnonzero(train_low == (only[0] == "low")), name=f"{train.name}-{only[0]}")
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
    paired(rows)


def paired(rows: dict[str, list[dict[str, float]]]) -> None:
    """Each method's per-seed difference from every lora row on the same seeds (paired: same data order and split),
    mean and a t interval (95 %) over the seeds."""
    from scipy import stats

    for ref in [k for k in rows if k in ("lora", "lora2r")]:
        base = {x["seed"]: x for x in rows[ref]}
        for name, rs in rows.items():
            both = [(x, base[x["seed"]]) for x in rs if x["seed"] in base and not name.startswith("lora")]
            if len(both) < 2:
                continue
            parts = []
            for k in ("high", "low"):
                d = np.array([x[k] - b[k] for x, b in both]) * 100
                half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
                parts.append(f"{k} {d.mean():+.1f} [{d.mean() - half:+.1f}, {d.mean() + half:+.1f}]")
            print(f"{name} - {ref} over {len(both)} seeds (points): " + ", ".join(parts))


if __name__ == "__main__":
    main()
