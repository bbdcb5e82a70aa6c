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

from transferlab.bench import DomainBenchResult
from transferlab.report import render_markdown


def methods_table(b: dict[str, Any]) -> str:
    return "\n".join(render_markdown(t) for t in DomainBenchResult.tables_from(b) if t.name.startswith("methods:"))


def selectors_table(b: dict[str, Any]) -> str:
    return "\n".join(render_markdown(t) for t in DomainBenchResult.tables_from(b) if t.name.startswith("selectors:"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="bench_domain.json")
    b = json.loads(ap.parse_args().bench.read_text())
    print(methods_table(b), selectors_table(b), sep="\n")


if __name__ == "__main__":
    main()
