"""Markdown tables of one or two ``bench rank`` runs (issue 13): weighted τ of every metric, the consensus and the
baselines per target and their mean, side by side for two ground truths (e.g. fine-tuning and the linear probe); the
priors, Δτw over the best prior and the noise ceiling (issue 30: add --replicates 2 to the first command); the
ground-truth accuracies with the linear-probe reference; the checks (under-trained cells, cells without a plateau,
the test split's power to separate the models); and the cost (ranking time against ground-truth time).

Exact commands (docs/benchmarks.md, "bench rank with a fine-tuning ground truth"):

    TRANSFERLAB_CACHE=/tmp/benchcache .venv/bin/transferlab bench rank --zoo builtin:vision \\
        --targets builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures --fit-method finetune \\
        --limit 500 --image-size 32 --epochs 10 --patience 2 --out runs/bench-rank-finetune
    TRANSFERLAB_CACHE=/tmp/benchcache .venv/bin/transferlab bench rank --zoo builtin:vision \\
        --targets builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures --fit-method linear_probe \\
        --limit 500 --image-size 32 --out runs/bench-rank-probe
    .venv/bin/python benchmarks/bench_rank_tables.py runs/bench-rank-finetune/bench.json \\
        runs/bench-rank-probe/bench.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transferlab.bench import BenchResult
from transferlab.report import Column, Table, render_markdown


def _short(t: str) -> str:
    return t.removeprefix("builtin:")


def _table(b: dict[str, Any], name: str) -> Table:
    return next(t for t in BenchResult.tables_from(b) if t.name == name)


def tau_table(first: dict[str, Any], second: dict[str, Any] | None) -> str:
    """The declared τw table of ``first`` (``BenchResult.tables()``: its verdict included), with the mean τw of
    ``second`` (another ground truth) beside it."""
    t = _table(first, "tau")
    if second:
        other = {r["score"]: r["mean"] for r in _table(second, "tau").rows}
        t.columns.insert(-1, Column("other", f"mean τw ({second['protocol']})", "number"))
        for r in t.rows:
            r["other"] = other.get(r["score"])
    return render_markdown(t, title=False)


def evidence(b: dict[str, Any]) -> str:
    """The priors (where their values come from), Δτw over the best prior with its verdict, and the noise ceiling
    (with --replicates), where the run has them (issue 30)."""
    names = {t.name for t in BenchResult.tables_from(b)}
    return "\n\n".join(render_markdown(_table(b, n)) for n in ("prior_sources", "priors", "noise") if n in names)


def ground_truth_table(b: dict[str, Any]) -> str:
    return render_markdown(_table(b, "ground_truth"), title=False)


def checks(b: dict[str, Any]) -> str:
    ch = b.get("checks") or {}
    out = [f"- under-trained cells (below their own linear probe): {len(ch.get('under_trained', []))}",
           f"- cells whose chosen grid point improved until its last epoch: {len(ch.get('not_converged', []))}",
           f"- linear-probe fallbacks: {len(ch.get('fallbacks', []))}"]
    for t, tc in (ch.get("targets") or {}).items():
        ov = tc.get("overlap_fraction")
        out.append(f"- {_short(t)}: {tc.get('n_test')} test examples; 95 % intervals overlap for "
                   f"{'n/a' if ov is None else f'{ov:.0%}'} of model pairs; ties: {len(tc.get('ties') or [])}")
    c = b["cost"]
    reps = ch.get("replicates")
    if reps:
        out.append(f"- replicates: {reps['k']} per cell; {reps['lr_at_grid_edge']} of {reps['trained_cells']} trained "
                   f"cells chose a learning rate at the (extended) grid's edge; the largest spread of one cell's "
                   f"accuracy across its replicates: {reps['largest_spread']:.3f}")
    out.append(f"- cost: ranking {c['ranking_seconds']:.0f} s, ground truth {c['ground_truth_seconds']:.0f} s "
               f"({c['ground_truth_over_ranking']:.1f}× the ranking)")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="bench.json of the main run")
    ap.add_argument("other", type=Path, nargs="?", help="bench.json of a second ground truth, shown beside it")
    a = ap.parse_args()
    first = json.loads(a.bench.read_text())
    second = json.loads(a.other.read_text()) if a.other else None
    print(tau_table(first, second), "", evidence(first), "", ground_truth_table(first), "", checks(first), sep="\n")


if __name__ == "__main__":
    main()
