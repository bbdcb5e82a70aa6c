"""Markdown tables of a ``bench prune`` run (issue 17): per target, each pretraining source's target accuracy (mean ±
sd over seeds), its mean per-seed difference to the full source, the classes and examples pretrained on, the
pretraining seconds (one thread, same run) and the speed-up; and the issue's check (label_map or feature_map at keep
0.5 within 1 point of the full source, above random, with ≥ 1.8× less pretraining time).

    .venv/bin/transferlab bench prune --out runs/bench-prune
    .venv/bin/python benchmarks/bench_prune_tables.py runs/bench-prune/bench_prune.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def tables(b: dict[str, Any]) -> str:
    out = []
    for t in b["targets"]:
        out += [f"**{t}** (source {b['source']}, {b['arch']}, keep {b['keep']:g}, seeds {b['seeds']})", "",
                "| pretrained on | target accuracy | Δ vs full (points) | classes | examples | pretraining s | "
                "speed-up | source test accuracy |", "|---|---|---|---|---|---|---|---|"]
        for x in (x for x in b["table"] if x["target"] == t):
            sd = f" ± {x['accuracy_sd']:.3f}" if x.get("accuracy_sd") is not None else ""
            delta = "" if x["row"] == "full" else f"{100 * x['delta_vs_full']:+.1f}"
            out.append(f"| {x['row']} | {x['accuracy_mean']:.3f}{sd} | {delta} | "
                       f"{len(x['classes'])} | {x['n_pretrain']} | {x['pretrain_seconds']:.1f} | "
                       f"{x['speedup_vs_full']:.2f}× | {x['source_accuracy']:.1f} % |")
        out.append("")
    return "\n".join(out)


def checks(b: dict[str, Any]) -> str:
    out = ["| target | best mapping | Δ vs full | vs random | speed-up | verdict |", "|---|---|---|---|---|---|"]
    for t in b["targets"]:
        rows = {x["row"]: x for x in b["table"] if x["target"] == t}
        best = max((rows[m] for m in ("label_map", "feature_map") if m in rows), key=lambda x: x["accuracy_mean"])
        rnd = rows.get("random")
        ok = (best["delta_vs_full"] >= -0.01 and (rnd is None or best["accuracy_mean"] > rnd["accuracy_mean"])
              and best["speedup_vs_full"] >= 1.8)
        out.append(f"| {t} | {best['row']} {best['accuracy_mean']:.3f} | {100 * best['delta_vs_full']:+.1f} | "
                   f"{100 * (best['accuracy_mean'] - rnd['accuracy_mean']):+.1f} | {best['speedup_vs_full']:.2f}× | "
                   f"{'met' if ok else 'not met'} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path)
    b = json.loads(ap.parse_args().json.read_text())
    print(tables(b))
    print(checks(b))


if __name__ == "__main__":
    main()
