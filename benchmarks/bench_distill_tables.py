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


def _pm(m: float | None, sd: float | None, scale: float = 1.0, digits: int = 3) -> str:
    if m is None:
        return "n/a"
    return f"{scale * m:.{digits}f}" + (f" ± {scale * sd:.{digits}f}" if sd is not None else "")


def _pts(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f}"


def tables(b: dict[str, Any]) -> str:
    out = []
    keys = sorted({(r["target"], r["label_share"]) for r in b["table"]}, key=lambda k: (k[0], -k[1]))
    for t, share in keys:
        rows = [r for r in b["table"] if (r["target"], r["label_share"]) == (t, share)]
        out += [f"**{t}, {100 * share:.0f} % of the training labels**" + ("" if share == 1 else
                " (the rest distilled as unlabelled examples)"), "",
                "| row | student accuracy | Δ vs labels-only (points) | transfer Δ vs its start | gain / loss | "
                "parameters | ms / image |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            gl = ("n/a" if r.get("knowledge_gain") is None else
                  f"{100 * r['knowledge_gain']:.1f} % / {100 * r['knowledge_loss']:.1f} %")
            out.append(f"| {r['row']} | {_pm(r['accuracy_mean'], r['accuracy_sd'])} | "
                       f"{'' if r['row'] == 'labels_only' else _pts(r['delta_vs_labels_only'])} | "
                       f"{_pts(r.get('transfer_delta'))} | {gl} | {r['params']:,} | {r['ms_per_image']:.2f} |")
        teach = [x for x in b["teacher_runs"] if (x["target"], x["label_share"]) == (t, share)]
        out.append("")
        out.append("Teachers: " + "; ".join(f"{x['teacher'].removeprefix('builtin:')} {x['test_accuracy']:.3f} "
                                            f"({x['params']:,} parameters, {x['ms_per_image']:.2f} ms / image)"
                                            for x in teach))
        out.append("")
    return "\n".join(out)


def checks(b: dict[str, Any]) -> str:
    out = ["| check | target, labels | measured | verdict |", "|---|---|---|---|"]
    cell = {(r["target"], r["label_share"], r["row"]): r for r in b["table"]}
    for t, share in sorted({(r["target"], r["label_share"]) for r in b["table"]}, key=lambda k: (k[0], -k[1])):
        kd = {row: r for (tt, s, row), r in cell.items() if (tt, s) == (t, share) and row.startswith("kd[")}
        best_kd = max(kd.values(), key=lambda r: r["accuracy_mean"]) if kd else None
        where = f"{t.removeprefix('builtin:')}, {100 * share:.0f} %"
        if share < 1 and best_kd:
            d = best_kd["delta_vs_labels_only"]
            out.append(f"| kd ≥ labels-only + 2 points | {where} | {best_kd['row']} {_pts(d)} | "
                       f"{'met' if d is not None and d >= 0.02 else 'not met'} |")
        multi = [cell.get((t, share, m)) for m in ("multi_avg", "multi_weighted")]
        multi = [m for m in multi if m]
        if multi and best_kd:
            m = max(multi, key=lambda r: r["accuracy_mean"])
            out.append(f"| multi-teacher ≥ the better single kd | {where} | {m['row']} {m['accuracy_mean']:.3f} vs "
                       f"{best_kd['row']} {best_kd['accuracy_mean']:.3f} | "
                       f"{'met' if m['accuracy_mean'] >= best_kd['accuracy_mean'] else 'not met'} |")
        kt, kl = cell.get((t, share, "kd_trained[weak]")), cell.get((t, share, "kl_dp_trained[weak]"))
        kt = kt or next((r for (tt, s, row), r in cell.items() if (tt, s) == (t, share) and row.startswith("kd_trained")), None)
        kl = kl or next((r for (tt, s, row), r in cell.items() if (tt, s) == (t, share) and row.startswith("kl_dp_trained")), None)
        if kt and kl:
            loses = kt["delta_vs_labels_only"] is not None and kt["delta_vs_labels_only"] < 0
            ok = kl["delta_vs_labels_only"] is not None and kl["delta_vs_labels_only"] >= -0.002
            out.append(f"| kl_dp on the trained student, weaker teacher: Δ ≥ −0.2 where kd loses | {where} | kd "
                       f"{_pts(kt['delta_vs_labels_only'])}, kl_dp {_pts(kl['delta_vs_labels_only'])} | "
                       f"{('met' if ok else 'not met') if loses else ('kd does not lose here; kl_dp ' + ('≥ −0.2' if ok else '< −0.2'))} |")
    # the big teacher the student replaces: the runs that distil from it (its kd and feature rows, the multi rows)
    s = [r for r in b["runs"] if r.get("teacher_ms_per_image") and r.get("ms_per_image")
         and ("efficientnet_lite0" in r["row"] or r["row"].startswith("multi"))]
    if s:
        import numpy as np

        sp = [max(r["teacher_ms_per_image"]) / r["ms_per_image"] for r in s]
        out.append(f"| student ≥ 5× faster per image than EfficientNet-Lite0 (each run measures both) | "
                   f"{len(s)} runs | median {float(np.median(sp)):.1f}× (min {min(sp):.1f}×) | "
                   f"{'met' if np.median(sp) >= 5 else 'not met'} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path)
    b = json.loads(ap.parse_args().json.read_text())
    print(f"seeds {b['seeds']}, students {b['students']}, teachers {b['teachers']}\n")
    print(tables(b))
    print(checks(b))


if __name__ == "__main__":
    main()
