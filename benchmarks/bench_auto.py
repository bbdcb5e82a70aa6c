"""``transferlab auto`` on the built-in targets (issue 17): one run per target with its budget, each in its own process;
then a table of the test accuracy, the wall time against the budget, the method and model kept, and every stage's
estimate against its measured time.

    .venv/bin/python benchmarks/bench_auto.py --out runs/bench-auto \\
        --runs builtin:fashion-mnist=10m,builtin:digits=5m,builtin:shapes=5m,builtin:textures=5m,builtin:rotten-tomatoes=10m
    .venv/bin/python benchmarks/bench_auto.py --out runs/bench-auto --table-only

A finished run is not redone (its directory holds it); the table is printed from the runs' metrics.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _name(data: str) -> str:
    return data.removeprefix("builtin:").replace("/", "-").replace(":", "-")


def run(data: str, budget: str, out: Path) -> float | None:
    d = out / _name(data)
    if (d / "metrics.json").is_file():
        return None
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "transferlab", "auto", data, "--budget", budget, "--out", str(d), "-q"],
                   check=True)
    return time.perf_counter() - t


def table(out: Path, runs: list[tuple[str, str]]) -> str:
    lines = ["| target | budget | wall time (process) | test accuracy | kept | method, epochs | stages: estimate / measured |",
             "|---|---|---|---|---|---|---|"]
    for data, budget in runs:
        d = out / _name(data)
        if not (d / "metrics.json").is_file():
            lines.append(f"| {data} | {budget} | not run | | | | |")
            continue
        m = json.loads((d / "metrics.json").read_text())
        wall = json.loads((d / "wall.json").read_text())["seconds"] if (d / "wall.json").is_file() else None
        parts = []
        for name, v in m["stages"].items():
            got = "skipped" if v["measured"] is None else f"{v['measured']:.0f}"
            parts.append(f"{name} {v['estimate']:.0f}/{got}")
        stages = "; ".join(parts)
        lines.append(f"| {data} | {budget} | {m['wall_seconds']:.0f} s ({wall:.0f} s)" if wall else
                     f"| {data} | {budget} | {m['wall_seconds']:.0f} s")
        lines[-1] += (f" | {m['test_accuracy']:.3f} | {m['model'].removeprefix('builtin:')} ({m['chosen']}) | "
                      f"{m['method']}, {m.get('epochs')} of {m.get('epochs_planned')} | {stages} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-auto"))
    ap.add_argument("--runs", default="builtin:fashion-mnist=10m,builtin:digits=5m,builtin:shapes=5m,"
                    "builtin:textures=5m,builtin:rotten-tomatoes=10m", help="DATA=BUDGET,...")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    runs = [tuple(x.split("=", 1)) for x in a.runs.split(",") if x.strip()]
    if not a.table_only:
        for data, budget in runs:
            secs = run(data, budget, a.out)
            if secs is not None:
                (a.out / _name(data) / "wall.json").write_text(json.dumps({"seconds": secs}) + "\n")
                print(f"{data}: {secs:.0f} s", flush=True)
    print(table(a.out, runs))


if __name__ == "__main__":
    main()
