"""The docs/benchmarks.md tables of ``transferlab bench continual`` (issue 16) from its ``bench_continual.json``.

    .venv/bin/transferlab bench continual --seeds 0,1,2 --out runs/bench-continual
    .venv/bin/python benchmarks/bench_continual_tables.py runs/bench-continual/bench_continual.json
"""

from __future__ import annotations

import json
import sys

from transferlab.bench import ContinualBenchResult
from transferlab.report import render_markdown_all


def tables(d: dict) -> str:
    """The declared tables of the run (``ContinualBenchResult.tables()``) as Markdown."""
    return render_markdown_all(ContinualBenchResult.tables_from(d))


if __name__ == "__main__":
    print(tables(json.loads(open(sys.argv[1]).read())))
