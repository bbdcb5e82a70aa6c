"""Markdown tables of a ``bench scaling`` run (issue 30, item 6): target accuracy per pretraining size and
fine-tuning size (mean ± sd over seeds), and the log law of Isik et al. (2024) fitted below the largest pretraining
size with its prediction of the held-back size, beside the naive predictors.

    OMP_NUM_THREADS=1 .venv/bin/transferlab bench scaling --out runs/bench-scaling
    .venv/bin/python benchmarks/bench_scaling_tables.py runs/bench-scaling/bench_scaling.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transferlab.bench import ScalingBenchResult
from transferlab.report import render_markdown_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path)
    print(render_markdown_all(ScalingBenchResult.tables_from(json.loads(ap.parse_args().json.read_text()))))


if __name__ == "__main__":
    main()
