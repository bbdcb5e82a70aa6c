"""Markdown tables of a ``bench distill`` run (issue 15): per target and label share, every row's student accuracy
(mean ± sd over seeds), its mean per-seed delta against the labels-only student, the transfer delta against the
student's start, knowledge gain and loss, parameters and latency; the teachers' accuracy and latency; and the checks
of the issue's evidence (kd ≥ labels-only + 2 points at 20 % labels; multi-teacher ≥ the better single kd; kl_dp
on a trained student with the weaker teacher ≥ −0.2 points where kd loses; the student's speed-up ≥ 5×).

    .venv/bin/transferlab bench distill --out runs/bench-distill
    # with the dkd row (opt-in; the other rows' runs come from the cache of the same --out):
    .venv/bin/transferlab bench distill --out runs/bench-distill \
        --rows kd,multi_avg,multi_weighted,feature,kd_trained,kl_dp_trained,dkd
    .venv/bin/python benchmarks/bench_distill_tables.py runs/bench-distill/bench_distill.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transferlab.bench import DistillBenchResult
from transferlab.report import render_markdown


def tables(b: dict[str, Any]) -> str:
    """The teachers and the per-(target, label share) tables (``DistillBenchResult.tables()``) as Markdown."""
    return "\n".join(render_markdown(t) for t in DistillBenchResult.tables_from(b) if t.name != "checks")


def checks(b: dict[str, Any]) -> str:
    """The issue's checks, computed on the result (its ``verdicts``), as Markdown."""
    return "\n".join(render_markdown(t, title=False) for t in DistillBenchResult.tables_from(b) if t.name == "checks")


def from_cache(out: Path) -> dict[str, Any]:
    """The result of a bench that has not finished (no bench_distill.json yet) from its run cache, ``out/runs``:
    every finished teacher, labels-only and distillation run. Only for a cache of one configuration (one --out)."""
    recs = [json.loads(f.read_text()) for f in sorted((out / "runs").glob("*.json"))]
    teachers = [{k: v for k, v in r.items() if k != "dir"} for r in recs if "teacher" in r]
    runs = [{k: v for k, v in r.items() if k != "dir"} for r in recs if "row" in r]
    r = DistillBenchResult(sorted({x["target"] for x in runs}), sorted({x["teacher"] for x in teachers}),
                           sorted({x["student"] for x in runs}), sorted({x["seed"] for x in runs}),
                           sorted({x["label_share"] for x in runs}, reverse=True), runs, teachers)
    return r.to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path, help="bench_distill.json, or with --from-cache the bench's --out folder")
    ap.add_argument("--from-cache", action="store_true", help="read the run cache of an unfinished bench")
    a = ap.parse_args()
    b = from_cache(a.json) if a.from_cache else json.loads(a.json.read_text())
    print(f"seeds {b['seeds']}, students {b['students']}, teachers {b['teachers']}\n")
    print(tables(b))
    print(checks(b))


if __name__ == "__main__":
    main()
