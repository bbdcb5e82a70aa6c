"""BlackVIP on a shifted target (issue 34 item 1): a frozen digits classifier (``linear_probe`` of a built-in model on
builtin:digits) is adapted to builtin:digits-m through its predicted probabilities only, by SPSA-GC and by plain SPSA
at the same query budget; against it: the black box as it is, the same coordinator trained by backprop (white-box
visual prompting) and a white-box ``linear_probe`` on the target. Prints a Markdown table (test accuracy on the whole
digits-m test split, queries) and writes ``results.json`` into ``--out``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_blackvip.py --out runs/bench-blackvip \\
        --model builtin:small_resnet_shapes --limit 300 --budget 48000 --seeds 1,2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/bench-blackvip"))
    ap.add_argument("--model", default="builtin:small_resnet_shapes")
    ap.add_argument("--limit", type=int, default=300, help="target training examples (class-stratified)")
    ap.add_argument("--budget", type=int, default=48000, help="training queries (images sent to the black box)")
    ap.add_argument("--epochs", type=int, default=100, help="epoch cap (the budget ends the zeroth-order runs first)")
    ap.add_argument("--lr-gc", type=float, default=1e-4, help="SPSA-GC's gain a")
    ap.add_argument("--lr-spsa", type=float, default=3e-4, help="SPSA's gain a")
    ap.add_argument("--sp-avg", type=int, default=1, help="perturbations per SPSA step")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--bp-epochs", type=int, default=15, help="epochs of the backprop baseline")
    ap.add_argument("--seeds", default="1,2")
    args = ap.parse_args()

    from transferlab.data import load_dataset
    from transferlab.fit import fit
    from transferlab.models import evaluate

    out = args.out
    src = load_dataset("builtin:digits")
    target = load_dataset("builtin:digits_m").stratified_sample(args.limit, seed=0)
    test = load_dataset("builtin:digits_m", "test")
    box = out / "black-box"
    if not (box / "metrics.json").is_file():
        fit(src, args.model, "linear_probe", test=load_dataset("builtin:digits", "test"), out=box, image_size=32)
    rows = {"black box (digits classifier), as is": {
        "test_accuracy": evaluate(box, test)["accuracy"], "queries": 0,
        "source_test_accuracy": json.loads((box / "metrics.json").read_text())["test_accuracy"]}}
    zo = {"query_budget": args.budget, "sp_avg": args.sp_avg}
    runs = {"blackvip spsa_gc": {"estimator": "spsa_gc", "lr": args.lr_gc, **zo},
            "blackvip spsa": {"estimator": "spsa", "lr": args.lr_spsa, **zo},
            "coordinator by backprop (white box)": {"estimator": "backprop", "lr": 1e-2}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, opts in runs.items():
            d = out / f"{name.split(' (')[0].replace(' ', '-')}-s{seed}"
            t = time.perf_counter()
            backprop = opts["estimator"] == "backprop"
            r = fit(target, args.model, "blackvip", test=test, out=d, overwrite=True, init=box, image_size=32,
                    epochs=args.bp_epochs if backprop else args.epochs, batch_size=args.batch_size, seed=seed,
                    val_fraction=0.2, **opts)
            m = r.metrics
            rows[f"{name}, seed {seed}"] = {"test_accuracy": m["test_accuracy"], "queries": m["queries_train"],
                                            "queries_eval": m["queries_eval"], "epochs": m["epochs"],
                                            "seconds": time.perf_counter() - t}
        r = fit(target, args.model, "linear_probe", test=test, out=out / f"linear-probe-s{seed}", overwrite=True,
                image_size=32, seed=seed)
        rows[f"linear_probe on the target (white box), seed {seed}"] = {"test_accuracy": r.metrics["test_accuracy"],
                                                                        "queries": None}
    (out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                                 indent=1))
    print("| run | digits-m test accuracy | training queries | epochs |")
    print("|---|---|---|---|")
    for name, v in rows.items():
        q = "white box" if v["queries"] is None else f"{v['queries']:,}"
        print(f"| {name} | {v['test_accuracy']:.3f} | {q} | {v.get('epochs', '')} |")


if __name__ == "__main__":
    main()
