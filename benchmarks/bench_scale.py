"""Ray against the local backend (issue 28): wall time and identical results on one machine.

1. A 16-run bench domain grid (small_resnet_shapes, digits → digits-m, dann and mcc, trade-offs 0.3 and 1, seeds
   0-3, 3 epochs on 400 examples, no supervised bound) on the local backend (one process, one run after the other)
   and on a Ray cluster of two one-CPU nodes (``ray.cluster_utils.Cluster``, started here): the wall time of each,
   the speed-up, and whether the rows (every run's record less its measured seconds) are identical.
2. ``rank`` of the built-in zoo (builtin:vision, 14 models) on a built-in target, local against Ray (one task per
   model): wall time and whether every score, rank and consensus is identical.

Every torch and BLAS computation runs on one thread (``OMP_NUM_THREADS=1``, set before torch is imported; Ray gives
each one-CPU task the same), so both backends compute the same floats and each Ray run has what a local run has. Each
side starts from an empty feature cache. Run it alone on the machine (check ``uptime`` first):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_scale.py [--quick] [--json runs/bench-scale.json]

``--quick``: 4 runs and 3 models (a check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread per run, in both backends

TIMING = {"seconds"}  # measured, not computed


def _grid(quick: bool, epochs: int) -> dict:
    return dict(shifts=[("builtin:digits", "builtin:digits-m")], methods="dann,mcc",
                seeds=(0,) if quick else (0, 1, 2, 3), trade_offs=(0.3, 1.0), epochs=epochs, limit=400, test_limit=200,
                image_size=32, batch_size=32, supervised=False)


def _domain(model: str, out: Path, quick: bool, epochs: int, backend: str) -> tuple[float, float, list[dict]]:
    """(wall seconds, the runs' own seconds added up, the rows less their seconds)."""
    from transferlab.bench import bench_domain

    t0 = time.perf_counter()
    r = bench_domain(model, out=out, backend=backend, **_grid(quick, epochs))
    return (time.perf_counter() - t0, sum(run["seconds"] for run in r.runs),
            [{k: v for k, v in run.items() if k not in TIMING} for run in r.runs])


def _rank(target: str, zoo, limit: int, cache: Path, backend) -> tuple[float, dict]:  # noqa: ANN001
    from transferlab.rank import rank

    t0 = time.perf_counter()
    r = rank(target, zoo, limit=limit, cache_dir=cache, backend=backend)
    seconds = time.perf_counter() - t0
    d = r.to_dict()
    d.pop("timings")
    d["options"].pop("cache_dir")
    for m in d["models"]:
        m.pop("timings")
    return seconds, d


PROBE = """
import time, torch
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, padding=1),
                          torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01)
x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
t0 = time.perf_counter()
for _ in range(STEPS):
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
print(time.perf_counter() - t0)
"""


def _ceiling(steps: int) -> dict:
    """The machine's own limit on running two things at once: a fixed one-thread training loop alone, then two copies
    side by side. ``ceiling`` = 2 x alone / together: 2.0 where two processes run as fast as one."""
    import subprocess
    import sys

    code = PROBE.replace("STEPS", str(steps))

    def run(n: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return [float(p.communicate()[0]) for p in procs]

    alone = run(1)[0]
    together = max(run(2))
    return {"alone_seconds": alone, "two_at_once_seconds": together, "ceiling": 2 * alone / together}


def _cluster(cache: Path):  # noqa: ANN202
    """Two nodes of one CPU each; their workers extract into ``cache``."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["TRANSFERLAB_CACHE"] = str(cache)  # the nodes' workers inherit it
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="builtin:small_resnet_shapes")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each domain run")
    ap.add_argument("--target", default="builtin:fashion-mnist")
    ap.add_argument("--limit", type=int, default=200, help="examples of the target rank scores on")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import ray

    from transferlab.bench import backend_of
    from transferlab.zoo import Zoo, load_zoo

    zoo = load_zoo("builtin:vision")
    if args.quick:
        zoo = Zoo(name="vision-3", models=zoo.models[3:5] + zoo.models[-2:-1])
    out: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "omp_threads": os.environ["OMP_NUM_THREADS"],
                 "two_processes": _ceiling(30 if args.quick else 300)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["TRANSFERLAB_CACHE"] = str(root / "cache-local")
        local_s, local_run_s, local_rows = _domain(args.model, root / "local", args.quick, args.epochs, "local")
        local_rank_s, local_rank = _rank(args.target, zoo, args.limit, root / "rank-local", "local")
        t0 = time.perf_counter()
        cluster = _cluster(root / "cache-ray")
        startup = time.perf_counter() - t0
        try:
            ray_s, ray_run_s, ray_rows = _domain(args.model, root / "ray", args.quick, args.epochs, "ray")
            ray_rank_s, ray_rank = _rank(args.target, zoo, args.limit, root / "rank-ray", backend_of("ray"))
        finally:
            ray.shutdown()
            cluster.shutdown()
    out |= {
        "domain_grid": {"runs": len(local_rows), "epochs": args.epochs, "local_seconds": local_s, "ray_seconds": ray_s,
                        "local_run_seconds": local_run_s, "ray_run_seconds": ray_run_s,
                        "ray_startup_seconds": startup, "speedup": local_s / ray_s,
                        "speedup_with_startup": local_s / (ray_s + startup), "identical_rows": local_rows == ray_rows},
        "rank": {"zoo": zoo.name, "models": len(zoo.models), "target": args.target, "limit": args.limit,
                 "local_seconds": local_rank_s, "ray_seconds": ray_rank_s, "speedup": local_rank_s / ray_rank_s,
                 "identical_scores": local_rank == ray_rank},
        "load_after": os.getloadavg(),
    }
    g, k = out["domain_grid"], out["rank"]
    print(f"load average before: {out['load_before'][0]:.2f} (1 min), {out['cpus']} CPUs, OMP_NUM_THREADS="
          f"{out['omp_threads']}")
    c = out["two_processes"]
    print(f"two one-thread training loops at once: {c['two_at_once_seconds']:.1f} s each against "
          f"{c['alone_seconds']:.1f} s alone: this machine runs two things {c['ceiling']:.2f}x as fast as one")
    print(f"bench domain, {g['runs']} runs of {args.epochs} epochs: local {g['local_seconds']:.1f} s, Ray (2 x 1-CPU nodes) "
          f"{g['ray_seconds']:.1f} s (+ {startup:.1f} s cluster start-up): {g['speedup']:.2f}x "
          f"({g['speedup_with_startup']:.2f}x with the start-up); rows identical: {g['identical_rows']}; the runs' "
          f"own seconds added up: local {local_run_s:.1f}, Ray {ray_run_s:.1f}")
    print(f"rank {k['zoo']} ({k['models']} models) on {k['target']} (limit {k['limit']}): local "
          f"{k['local_seconds']:.1f} s, Ray {k['ray_seconds']:.1f} s: {k['speedup']:.2f}x; scores identical: "
          f"{k['identical_scores']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
