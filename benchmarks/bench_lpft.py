"""LP-FT in the few-label regime: ``finetune`` with its new head random (the default) against the head started as the
linear probe on the frozen pretrained features (``head_init=probe``), on the same class-stratified samples as
bench_sla.py (10 % of a built-in training split, each seed its own sample), and the linear probe alone; test accuracy
on the whole built-in test split. The two fits of a seed run one after the other (interleaved), same settings.

    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_lpft.py --data builtin:fashion-mnist
    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_lpft.py --data builtin:shapes
    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_lpft.py --data builtin:fashion-mnist \\
        --fraction 0.5 --epochs 10 --val-fractions 0.1

Each row: the seed, the fits' --val-fraction, test accuracy of the linear probe, of finetune (random head) and of
finetune head_init=probe, and each fit's kept epoch.

``--diagnose``: per seed (--val-fractions' first), the linear probe against head_init=probe after one epoch at
lr 1e-7 (the weights stay put; only the batch norms' running statistics move, as the loop's training mode updates
them on the target images): how much of the probe's accuracy the running statistics alone take away.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="builtin:fashion-mnist")
    p.add_argument("--model", default="builtin:small_resnet_textures")
    p.add_argument("--method", default="finetune", choices=["finetune", "partial"])
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--val-fractions", default="0.1,0", help="comma-separated fit --val-fraction values")
    p.add_argument("--diagnose", action="store_true", help="the batch-norm statistics check above")
    args = p.parse_args()
    from transferlab.data import load_dataset
    from transferlab.fit import fit

    full, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    if args.diagnose:
        return diagnose(args, full, test)
    rows = []
    for vf in (float(v) for v in args.val_fractions.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            train = full.stratified_sample(int(round(args.fraction * len(full))), seed=seed)
            kw = {"test": test, "image_size": args.image_size, "seed": seed, "val_fraction": vf}
            row = {"val_fraction": vf, "seed": seed, "n_train": len(train), "epochs": args.epochs,
                   "linear_probe": fit(train, args.model, "linear_probe", **kw).metrics["test_accuracy"]}
            for name, opts in (("random", {}), ("probe", {"head_init": "probe"})):
                t0 = time.perf_counter()
                m = fit(train, args.model, args.method, epochs=args.epochs, **kw, **opts).metrics
                row.update({name: m["test_accuracy"], f"{name}_best_epoch": m.get("best_epoch"),
                            f"{name}_seconds": round(time.perf_counter() - t0, 1)})
            rows.append(row)
            print(json.dumps(row), flush=True)
        mine = [r for r in rows if r["val_fraction"] == vf]
        print(json.dumps({"data": args.data, "model": args.model, "method": args.method, "fraction": args.fraction,
                          "epochs": args.epochs, "val_fraction": vf,
                          "mean": {k: sum(r[k] for r in mine) / len(mine)
                                   for k in ("linear_probe", "random", "probe")}}), flush=True)


def diagnose(args, full, test) -> None:
    from transferlab.fit import fit

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train = full.stratified_sample(int(round(args.fraction * len(full))), seed=seed)
        kw = {"test": test, "image_size": args.image_size, "seed": seed,
              "val_fraction": float(args.val_fractions.split(",")[0])}
        rows.append({"seed": seed, "linear_probe": fit(train, args.model, "linear_probe", **kw).metrics["test_accuracy"],
                     "probe_head_1_epoch_lr_1e-7": fit(train, args.model, args.method, epochs=1, lr=1e-7,
                                                       head_init="probe", **kw).metrics["test_accuracy"]})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"data": args.data, "diagnose": True, "mean": {k: sum(r[k] for r in rows) / len(rows)
                                                                    for k in rows[0] if k != "seed"}}))


if __name__ == "__main__":
    main()
