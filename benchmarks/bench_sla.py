"""SLA (issue 34 item 3) in the few-label regime: a model fitted on 10 % of a built-in training split, with and
without self-supervised label augmentation (4 rotations, aggregated prediction; the self-distilled single head too),
3 seeds; test accuracy on the whole built-in test split.

    OMP_NUM_THREADS=1 timeout 1800 .venv/bin/python benchmarks/bench_sla.py --data builtin:fashion-mnist
    OMP_NUM_THREADS=1 timeout 1800 .venv/bin/python benchmarks/bench_sla.py --data builtin:shapes

``--controls`` separates the single head's gain (every head below is ``distil_single_head``'s recipe: a fresh
linear head, 10 epochs, lr 1e-2, on the frozen features of the unrotated training images): (a) the plain fit with as
many steps as SLA's (``--baseline-epochs``, default 4 x ``--epochs``) and a head refitted on its features on the
true labels; (b) the SLA network's features and a head on the true labels instead of the aggregated predictions;
(c) SLA's single head as it is.

    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_sla.py --data builtin:shapes --controls
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
    p.add_argument("--controls", action="store_true", help="also the refitted-head controls (a) and (b) above")
    p.add_argument("--baseline-epochs", type=int, default=None, help="the plain fit's epochs with --controls "
                   "(default 4 x --epochs)")
    p.add_argument("--val-fraction", type=float, default=None, help="with --controls: the fits' held-out "
                   "validation fraction (default: fit's, 0.1); 0 trains the fits on every example the heads see")
    args = p.parse_args()
    if args.controls:
        return controls(args)
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


def _head_accuracy(result, train, test, seed: int) -> float:
    """Test accuracy of a fresh linear head fitted on ``result``'s network's frozen features on the true labels,
    by the single head's recipe (``distil_single_head`` with no teacher)."""
    import numpy as np

    from transferlab.fit._sla import distil_single_head
    from transferlab.models import ImageTensors, predict_logits

    m = result.metrics
    head = distil_single_head(result.model, None, train, m, batch_size=32, seed=seed)
    data = ImageTensors(test, m["image_size"], tuple(m["mean"]), tuple(m["std"]))
    return float(np.mean(predict_logits(head, data, 32).argmax(1) == test.labels))


def controls(args) -> None:
    from transferlab.data import load_dataset
    from transferlab.fit import fit, fit_label_augmented

    full, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    base_epochs = args.baseline_epochs or 4 * args.epochs
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train = full.stratified_sample(int(round(args.fraction * len(full))), seed=seed)
        kw = {"image_size": args.image_size, "seed": seed}
        if args.val_fraction is not None:
            kw["val_fraction"] = args.val_fraction
        t0 = time.perf_counter()
        base = fit(train, args.model, args.method, test=test, epochs=base_epochs, **kw)
        row = {"seed": seed, "n_train": len(train), "baseline_epochs": base_epochs,
               "baseline": base.metrics["test_accuracy"], "a_baseline_refit_head": _head_accuracy(base, train, test, seed)}
        t1 = time.perf_counter()
        sla = fit_label_augmented(train, args.model, args.method, test=test, head="single", epochs=args.epochs, **kw)
        row.update(sla_aggregated=sla.metrics["test_accuracy"], sla_joint_identity=sla.metrics["joint_identity_accuracy"],
                   b_sla_features_label_head=_head_accuracy(sla.fit, train, test, seed),
                   c_sla_single_head=sla.metrics["single_head_accuracy"], baseline_seconds=t1 - t0,
                   sla_seconds=time.perf_counter() - t1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k not in ("seed", "n_train", "baseline_epochs")]
    print(json.dumps({"data": args.data, "model": args.model, "method": args.method, "epochs": args.epochs,
                      "baseline_epochs": base_epochs, "val_fraction": args.val_fraction, "mean": {k: sum(r[k] for r in rows) / len(rows) for k in keys}}))


if __name__ == "__main__":
    main()
