"""SLA (issue 34 item 3) in the few-label regime: a model fitted on 10 % of a built-in training split, with and
without self-supervised label augmentation (4 rotations, aggregated prediction; the self-distilled single head too),
3 seeds; test accuracy on the whole built-in test split.

    OMP_NUM_THREADS=1 timeout 1800 .venv/bin/python benchmarks/bench_sla.py --data builtin:fashion-mnist
    OMP_NUM_THREADS=1 timeout 1800 .venv/bin/python benchmarks/bench_sla.py --data builtin:shapes
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="builtin:fashion-mnist")
    p.add_argument("--model", default="builtin:small_resnet_textures")
    p.add_argument("--method", default="finetune")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--baseline-only", action="store_true", help="only the plain fit (e.g. with 4x --epochs: as many "
                   "steps as SLA's fit, which sees every image 4 times an epoch)")
    args = p.parse_args()
    from transferlab.data import load_dataset
    from transferlab.fit import fit, fit_label_augmented

    full, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train = full.stratified_sample(int(round(args.fraction * len(full))), seed=seed)
        kw = {"epochs": args.epochs, "image_size": args.image_size, "seed": seed}
        t0 = time.perf_counter()
        base = fit(train, args.model, args.method, test=test, **kw).metrics["test_accuracy"]
        t1 = time.perf_counter()
        if args.baseline_only:
            rows.append({"seed": seed, "n_train": len(train), "epochs": args.epochs, "baseline": base,
                         "baseline_seconds": t1 - t0})
            print(json.dumps(rows[-1]), flush=True)
            continue
        sla = fit_label_augmented(train, args.model, args.method, test=test, head="single", **kw).metrics
        rows.append({"seed": seed, "n_train": len(train), "baseline": base, "sla_aggregated": sla["test_accuracy"],
                     "sla_joint_identity": sla["joint_identity_accuracy"],
                     "sla_single_head": sla["single_head_accuracy"], "baseline_seconds": t1 - t0,
                     "sla_seconds": time.perf_counter() - t1})
        print(json.dumps(rows[-1]), flush=True)
    keys = ("baseline",) if args.baseline_only else ("baseline", "sla_aggregated", "sla_joint_identity",
                                                       "sla_single_head")
    print(json.dumps({"data": args.data, "model": args.model, "method": args.method, "epochs": args.epochs,
                      "mean": {k: sum(r[k] for r in rows) / len(rows) for k in keys}}))


if __name__ == "__main__":
    main()
