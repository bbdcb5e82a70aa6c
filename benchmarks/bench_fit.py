"""Benchmark: every adaptation strategy on the same data, model and budget.

For each method, one ``transferlab fit`` process (so peak memory is the method's own) with the same dataset, model,
image size, epochs and batch size; reads its metrics.json and prints a markdown table: test accuracy, trainable
parameters, peak RSS, seconds per epoch.

Exact command (repository root, project venv), as recorded in docs/benchmarks.md:

    .venv/bin/python benchmarks/bench_fit.py --data builtin:fashion-mnist --model builtin:efficientnet_lite0 \\
        --image-size 128 --epochs 5

    .venv/bin/python benchmarks/bench_fit.py --data builtin:rotten-tomatoes --model builtin:minilm_l6 --epochs 3

Add ``--methods lora,adapter`` to run a subset; ``--json PATH`` keeps the raw metrics. ``--image-size`` (images) and
``--max-length`` (text) default to fit's own defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT = "linear_probe,head,bitfit,partial,finetune,lora,dora,ia3,adapter,mam,sparse"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="builtin:fashion-mnist")
    ap.add_argument("--model", default="builtin:efficientnet_lite0")
    ap.add_argument("--methods", default=DEFAULT)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("transferlab"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TRANSFERLAB_CACHE": str(Path(tmp) / "cache"), "HF_HUB_OFFLINE": "1"}
        for method in args.methods.split(","):
            out = Path(tmp) / method
            cmd = [exe, "fit", args.data, "--model", args.model, "--method", method, "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--out", str(out), "--quiet"]
            if args.image_size:
                cmd += ["--image-size", str(args.image_size)]
            if args.max_length:
                cmd += ["--max-length", str(args.max_length)]
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            m = json.loads((out / "metrics.json").read_text())
            epochs = max(1, m["epochs"])
            rows.append({k: m[k] for k in ("method", "test_accuracy", "val_accuracy", "trainable_params",
                                           "total_params", "train_seconds", "peak_rss_mb")} | {"epochs": epochs})
            r = rows[-1]
            print(f"| {method} | {r['test_accuracy']:.4f} | {r['trainable_params']:,} | {r['peak_rss_mb']:.0f} MB | "
                  f"{r['train_seconds'] / epochs:.1f} s |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
