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

from transferlab.bench import PruneBenchResult
from transferlab.report import render_markdown


def tables(b: dict[str, Any]) -> str:
    """The per-target tables (``PruneBenchResult.tables()``) as Markdown."""
    return "\n".join(render_markdown(t) for t in PruneBenchResult.tables_from(b) if t.name != "checks")


def checks(b: dict[str, Any]) -> str:
    """The issue's check per target, computed on the result (its ``verdicts``), as Markdown."""
    return "\n".join(render_markdown(t, title=False) for t in PruneBenchResult.tables_from(b) if t.name == "checks")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path)
    b = json.loads(ap.parse_args().json.read_text())
    print(tables(b))
    print(checks(b))


if __name__ == "__main__":
    main()
