"""Benchmark: the demo ranking, cold (empty cache) vs warm (cache hit), and metric + I/O overhead.

What it measures, on this machine, in one run:
- cold: wall-clock time of the demo command (``transferlab rank builtin:fashion-mnist --zoo builtin:vision``;
  each model at its default size for 28 px images: 128 px for the EfficientNet-Lites, 32 px for the small models) with
  an empty feature cache, as a subprocess (includes interpreter start and imports);
- warm: the same command again, same cache (median of ``--warm-repeats`` runs), and the ratio cold / warm;
- overhead: from the cold run's ranking.json, (total - bare forward passes) / forward passes, where the forward time is
  the time spent inside the models' batches; reported with all metrics and without the cross-validated linear probe.

Exact command (repository root, project venv):

    .venv/bin/python benchmarks/bench_rank.py

Options: --image-size N (default: each model's default) --limit (none) --cold-repeats 1 --warm-repeats 3 --json PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cold-repeats", type=int, default=1)
    ap.add_argument("--warm-repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    exe = str(Path(sys.executable).with_name("transferlab"))
    results = []
    for _ in range(args.cold_repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            cmd = [exe, "rank", "builtin:fashion-mnist", "--zoo", "builtin:vision", "--out", str(out), "--quiet"]
            if args.image_size:
                cmd += ["--image-size", str(args.image_size)]
            if args.limit:
                cmd += ["--limit", str(args.limit)]
            env = {**os.environ, "TRANSFERLAB_CACHE": str(Path(tmp) / "cache"), "HF_HUB_OFFLINE": "1"}
            cold = run(cmd, env)
            ranking = json.loads((out / "ranking.json").read_text())
            warm = [run(cmd, env) for _ in range(args.warm_repeats)]
            t = ranking["timings"]
            lp = sum(m["timings"]["metrics"].get("linear_probe", 0.0) for m in ranking["models"])
            results.append({
                "cold_s": cold, "warm_s": statistics.median(warm), "warm_all_s": warm,
                "forward_s": t["forward_seconds"], "total_in_process_s": t["total_seconds"],
                "metrics_s": t["metrics_seconds"], "linear_probe_s": lp,
                "overhead": (t["total_seconds"] - t["forward_seconds"]) / t["forward_seconds"],
                "overhead_without_linear_probe": (t["total_seconds"] - t["forward_seconds"] - lp)
                / t["forward_seconds"],
                "order": [m["name"] for m in ranking["models"]],
            })
    cold = statistics.median(r["cold_s"] for r in results)
    warm = statistics.median(r["warm_s"] for r in results)
    ovh = statistics.median(r["overhead"] for r in results)
    ovh_nolp = statistics.median(r["overhead_without_linear_probe"] for r in results)
    print(f"machine: {os.cpu_count()} CPUs; image size {args.image_size or 'default'}; limit {args.limit or 'none (2,000)'}")
    for r in results:
        print(f"cold {r['cold_s']:.1f} s | warm {r['warm_s']:.2f} s (runs {', '.join(f'{w:.2f}' for w in r['warm_all_s'])})"
              f" | forward {r['forward_s']:.1f} s, metrics {r['metrics_s']:.1f} s (linear probe {r['linear_probe_s']:.1f}"
              f" s), in-process total {r['total_in_process_s']:.1f} s")
        print("ranking: " + " > ".join(r["order"]))
    print(f"cold/warm = {cold / warm:.1f}x; overhead on forward passes: {ovh:.1%} all metrics, "
          f"{ovh_nolp:.1%} without linear_probe")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
