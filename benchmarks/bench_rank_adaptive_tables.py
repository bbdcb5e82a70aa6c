"""Markdown tables of a ``bench rank-adaptive`` run (issue 30, item 4): per target and seed, the adaptive ranking's
top-1 and top-3 set against the full ranking's and its share of the forward passes; then the goals.

    OMP_NUM_THREADS=1 .venv/bin/transferlab bench rank-adaptive --out runs/bench-rank-adaptive
    .venv/bin/python benchmarks/bench_rank_adaptive_tables.py runs/bench-rank-adaptive/bench_rank_adaptive.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transferlab.bench import AdaptiveBenchResult
from transferlab.report import render_markdown_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path)
    print(render_markdown_all(AdaptiveBenchResult.tables_from(json.loads(ap.parse_args().json.read_text()))))


if __name__ == "__main__":
    main()
