"""The docs/benchmarks.md tables of ``transferlab bench continual`` (issue 16) from its ``bench_continual.json``.

    .venv/bin/transferlab bench continual --seeds 0,1,2 --out runs/bench-continual
    .venv/bin/python benchmarks/bench_continual_tables.py runs/bench-continual/bench_continual.json
"""

from __future__ import annotations

import json
import sys


def _pm(m: float | None, sd: float | None, signed: bool = False) -> str:
    if m is None:
        return "n/a"
    f = f"{m:+.3f}" if signed else f"{m:.3f}"
    return f + (f" ± {sd:.3f}" if sd is not None else "")


def tables(d: dict) -> str:
    out = []
    for stream in dict.fromkeys(r["stream"] for r in d["table"]):
        rows = sorted((r for r in d["table"] if r["stream"] == stream), key=lambda r: -r["acc"])
        out.append(f"**{stream}**\n")
        out.append("| strategy | ACC | BWT | FWT | train s | peak memory growth (MB) | extra parameters / task | "
                   "mask bits / task |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in rows:
            out.append(f"| {r['strategy']} | {_pm(r['acc'], r.get('acc_sd'))} | "
                       f"{_pm(r.get('bwt'), r.get('bwt_sd'), True)} | {_pm(r.get('fwt'), r.get('fwt_sd'), True)} | "
                       f"{r['seconds']:.1f} | {r['peak_growth_mb']:.0f} | {r['extra_params_per_task']:,} | "
                       f"{r['mask_bits_per_task']:,} |")
        out.append("")
    for s in d.get("skipped", []):
        out.append(f"Skipped: {s['strategy']} on {s['stream']} ({s['why']}).")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(json.loads(open(sys.argv[1]).read())))
