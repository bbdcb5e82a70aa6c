"""Markdown tables of a ``bench domain`` run (issue 14): per shift and method the target accuracy (mean ± sd over
seeds) of the checkpoint the default selector kept and of the oracle's best epoch, the bounds, each run's time; per
selector the target accuracy of its pick among all checkpoints, its regret against the oracle's pick and Spearman's ρ.

    .venv/bin/transferlab bench domain --shifts 'builtin:digits>builtin:digits-m' \\
        --methods source_only,dann,cdan_e,mcc --trade-offs 0.3,1,3 --seeds 0,1,2 --out runs/bench-domain
    .venv/bin/python benchmarks/bench_domain_tables.py runs/bench-domain/bench_domain.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def _pm(m: float | None, sd: float | None) -> str:
    if m is None:
        return "n/a"
    return f"{m:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def methods_table(b: dict[str, Any]) -> str:
    lines = []
    for shift, cells in b["cells"].items():
        sup = (b.get("bounds") or {}).get(shift, {}).get("target_supervised") or []
        lines += [f"**{shift}** (trade-off 1; target-supervised bound {_pm(float(np.mean(sup)), float(np.std(sup, ddof=1)) if len(sup) > 1 else None) if sup else 'n/a'})", "",
                  "| method | kept by transfer_score | oracle's best epoch | vs source_only (kept) | seconds per run |",
                  "|---|---|---|---|---|"]
        base = cells.get("source_only", {}).get("kept_mean")
        for m, c in cells.items():
            secs = [r["seconds"] for r in b["runs"] if r["shift"] == shift and r["method"] == m
                    and (m == "source_only" or r["trade_off"] == 1.0)]
            delta = "" if m == "source_only" or base is None or c["kept_mean"] is None else \
                f"{100 * (c['kept_mean'] - base):+.1f} points"
            lines.append(f"| {m} | {_pm(c['kept_mean'], c['kept_sd'])} | {_pm(c['oracle_best_mean'], c['oracle_best_sd'])} "
                         f"| {delta} | {np.median(secs):.0f} |")
        lines.append("")
    return "\n".join(lines)


def selectors_table(b: dict[str, Any]) -> str:
    lines = []
    for shift, sel in b["selectors"].items():
        n = sum(len(r["history"]) for r in b["runs"] if r["shift"] == shift and r["seed"] == b["seeds"][0])
        lines += [f"**{shift}**: each selector picks one of the {n} checkpoints of a seed (methods × trade-offs × "
                  "epochs); means over seeds", "",
                  "| selector | target accuracy of its pick | regret vs the oracle's pick | Spearman ρ (score, accuracy) |",
                  "|---|---|---|---|"]
        for s, v in sorted(sel.items(), key=lambda kv: (kv[1]["regret"] is None, kv[1]["regret"] or 0)):
            lines.append(f"| {s} | {_pm(v['pick_accuracy'], None)} | {_pm(v['regret'], v['regret_sd'])} | "
                         f"{_pm(v['spearman'], None)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="bench_domain.json")
    b = json.loads(ap.parse_args().bench.read_text())
    print(methods_table(b), selectors_table(b), sep="\n")


if __name__ == "__main__":
    main()
