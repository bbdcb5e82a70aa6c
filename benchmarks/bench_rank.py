"""Benchmark: the demo ranking, cold (empty cache) and warm (cache hit), and everything around its forward passes.

What it measures, on this machine, in one run, for each of ``--cold-repeats`` cold runs (medians printed last):
- cold: wall-clock time of the demo command (``transferlab rank builtin:fashion-mnist --zoo builtin:vision``; each
  model at its default size for 28 px images: 128 px for the EfficientNet-Lites, 32 px for the small models) with an
  empty feature cache, as a subprocess (interpreter start, imports, the report included);
- from that run's ranking.json: the forward passes (the seconds inside the models' batches, input decoding and
  resizing included), the metrics (the sum of every metric's seconds: with the pipeline they run in a worker thread
  while the next model extracts, so they overlap the forward passes), the in-process total of ``rank()``, and
  total / forward for ``rank()`` and for the whole process;
- warm: the same command again, same cache (median of ``--warm-repeats`` runs), and cold / warm;
- with ``--sequential``: a cold run of the same command with the pipeline off (each model's metrics after its
  forward passes, as before; on a fresh cache), for the same figures one after the other;
- the load average before and after each run (``os.getloadavg``): the machine is shared.

Exact command (repository root, project venv):

    .venv/bin/python benchmarks/bench_rank.py --cold-repeats 3 --warm-repeats 3 --sequential

Options: --image-size N (default: each model's default) --limit N (none: 2,000) --sequential-first --json PATH.
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

# the CLI with the pipeline off (rank._pipeline's overlap=False): a benchmark's switch, not a user option
SEQUENTIAL = ("import functools, sys\nfrom transferlab.rank import _api, _pipeline\n"
              "_api.score_zoo_local = functools.partial(_pipeline.score_zoo_local, overlap=False)\n"
              "from transferlab.cli import main\nsys.argv = ['transferlab'] + sys.argv[1:]\nmain()\n")


def run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    load = os.getloadavg()[0]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return {"seconds": time.perf_counter() - t, "load_before": load, "load_after": os.getloadavg()[0]}


def cold_run(args: argparse.Namespace, sequential: bool) -> dict:
    """One cold run (fresh cache), then, pipelined, ``--warm-repeats`` warm ones; its figures."""
    exe = [sys.executable, "-c", SEQUENTIAL] if sequential else [str(Path(sys.executable).with_name("transferlab"))]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [*exe, "rank", "builtin:fashion-mnist", "--zoo", "builtin:vision", "--out", str(out), "--quiet"]
        cmd += ["--image-size", str(args.image_size)] if args.image_size else []
        cmd += ["--limit", str(args.limit)] if args.limit else []
        env = {**os.environ, "TRANSFERLAB_CACHE": str(Path(tmp) / "cache"), "HF_HUB_OFFLINE": "1"}
        cold = run(cmd, env)
        ranking = json.loads((out / "ranking.json").read_text())
        warm = [run(cmd, env) for _ in range(0 if sequential else args.warm_repeats)]
    t = ranking["timings"]
    fwd = t["forward_seconds"]
    return {"mode": "sequential" if sequential else "pipelined", "cold_s": cold["seconds"],
            "load": [cold["load_before"], cold["load_after"]], "forward_s": fwd, "metrics_s": t["metrics_seconds"],
            "extraction_s": t["extraction_seconds"], "rank_total_s": t["total_seconds"],
            "rank_over_forward": t["total_seconds"] / fwd, "process_over_forward": cold["seconds"] / fwd,
            "outside_forward_s": t["total_seconds"] - fwd, "outside_rank_s": cold["seconds"] - t["total_seconds"],
            "warm_s": statistics.median(w["seconds"] for w in warm) if warm else None,
            "warm_all_s": [w["seconds"] for w in warm], "warm_load": [w["load_before"] for w in warm],
            "cold_over_warm": cold["seconds"] / statistics.median(w["seconds"] for w in warm) if warm else None,
            "order": [m["name"] for m in ranking["models"]]}


def line(r: dict) -> str:
    s = (f"{r['mode']:>10}: cold {r['cold_s']:.1f} s (load {r['load'][0]:.1f}->{r['load'][1]:.1f}) | forward "
         f"{r['forward_s']:.1f} s, metrics {r['metrics_s']:.1f} s (summed), rank() outside the forward passes "
         f"{r['outside_forward_s']:.1f} s, process outside rank() {r['outside_rank_s']:.1f} s | rank()/forward "
         f"{r['rank_over_forward']:.3f}, process/forward {r['process_over_forward']:.3f}")
    if r["warm_s"] is not None:
        s += (f" | warm {r['warm_s']:.2f} s (runs {', '.join(f'{w:.2f}' for w in r['warm_all_s'])}; load "
              f"{', '.join(f'{x:.1f}' for x in r['warm_load'])}), cold/warm {r['cold_over_warm']:.1f}x")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cold-repeats", type=int, default=1)
    ap.add_argument("--warm-repeats", type=int, default=3)
    ap.add_argument("--sequential", action="store_true", help="also a cold run with the pipeline off, per repeat")
    ap.add_argument("--sequential-first", action="store_true", help="with --sequential: the first repeat starts with "
                    "the sequential run (repeats alternate the order: the load drifts)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} CPUs; image size {args.image_size or 'default'}; limit "
          f"{args.limit or 'none (2,000)'}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    results = []
    for i in range(args.cold_repeats):
        modes = [False, True] if args.sequential else [False]
        for sequential in (modes if (i + args.sequential_first) % 2 == 0 else modes[::-1]):  # alternate: the load drifts
            results.append(cold_run(args, sequential))
            print(line(results[-1]), flush=True)
    print("ranking: " + " > ".join(results[0]["order"]))
    for mode in ("pipelined", "sequential"):
        rs = [r for r in results if r["mode"] == mode]
        if not rs:
            continue

        def med(key: str, rs: list = rs) -> float:
            return statistics.median(r[key] for r in rs if r[key] is not None)

        print(f"median of {len(rs)} {mode}: cold {med('cold_s'):.1f} s, forward {med('forward_s'):.1f} s, metrics "
              f"{med('metrics_s'):.1f} s, other overhead in rank() {med('outside_forward_s'):.1f} s, around rank() "
              f"{med('outside_rank_s'):.1f} s; total/forward {med('rank_over_forward'):.3f} (rank()), "
              f"{med('process_over_forward'):.3f} (whole process)"
              + (f"; warm {med('warm_s'):.2f} s, cold/warm {med('cold_over_warm'):.1f}x" if mode == "pipelined"
                 else ""))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
