"""The goal table of issue 31 (docs/benchmarks.md, "Continual learning") from the runs that measure it:

    --short    bench_continual.json of ``bench continual --seeds 0,1,2`` (the 4-task stream)
    --long     bench_continual.json of ``bench continual --stream builtin:stream-long --stream builtin:stream-long:12``
    --ease     bench_continual.json of ``bench continual --strategies ease,ranpac --epochs 20 --option ease.r=64``
               (EASE at the reference's 20 epochs and bottleneck 64; optional)
    --time     the JSON of benchmarks/bench_continual_time.py (wall and CPU seconds, interleaved per seed)
    --related  the JSON of benchmarks/bench_continual_related.py (gpm and cuber on related tasks)

    .venv/bin/python benchmarks/bench_continual_goals.py --short S.json --long L.json --ease E.json \
        --time T.json --related R.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

TASK_STREAM = "builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures"
LONG, LONG_SPLIT = "builtin:stream-long", "builtin:stream-long:12"


def _runs(d: dict[str, Any] | None, stream: str, strategy: str) -> list[dict[str, Any]]:
    return [r for r in (d or {}).get("runs", []) if r["stream"] == stream and r["strategy"] == strategy]


def _mean(rs: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] for r in rs])) if rs else float("nan")


def closed_form_rows(short: dict[str, Any], timing: list[dict[str, Any]] | None) -> list[tuple[str, str, str]]:
    """ranpac and prototype against exssnet on the 4-task stream: ACC, BWT = 0 on every seed, time ratio."""
    ex = _runs(short, TASK_STREAM, "exssnet")
    rows = []
    for s in ("ranpac", "prototype"):
        rs = _runs(short, TASK_STREAM, s)
        acc_ok = _mean(rs, "acc") >= _mean(ex, "acc")
        bwt0 = all(r["bwt"] == 0 for r in rs)
        wall = _mean(rs, "seconds") / _mean(ex, "seconds")
        text = (f"ACC {_mean(rs, 'acc'):.3f} vs exssnet {_mean(ex, 'acc'):.3f}; BWT "
                f"{'0 exactly on every seed' if bwt0 else 'not 0'}; run time {_mean(rs, 'seconds'):.1f} s vs "
                f"{_mean(ex, 'seconds'):.1f} s in the bench (×{wall:.3f})")
        time_ok = wall <= 0.1
        if timing:
            t = [r for r in timing if r["strategy"] == s]
            te = [r for r in timing if r["strategy"] == "exssnet"]
            cpu = _mean(t, "cpu_s") / _mean(te, "cpu_s")
            wall_t = _mean(t, "wall_s") / _mean(te, "wall_s")
            text += f"; interleaved timing: wall ×{wall_t:.3f}, CPU ×{cpu:.3f}"
            time_ok = cpu <= 0.1 and wall_t <= 0.1
        misses = [k for k, ok in (("ACC", acc_ok), ("BWT", bwt0), ("time", time_ok)) if not ok]
        rows.append((f"`{s}` ≥ `exssnet`'s ACC on the 4-task stream, BWT = 0, ≤ 1/10 of its time", text,
                     "met" if not misses else "not met (" + ", ".join(misses) + ")"))
    return rows


def ease_row(short: dict[str, Any], long: dict[str, Any], ease: dict[str, Any] | None) -> tuple[str, str, str]:
    parts, met = [], False
    for d, stream, label in ((short, TASK_STREAM, "4-task"), (long, LONG, "stream-long"),
                             (long, LONG_SPLIT, "stream-long:12")):
        e, r = _mean(_runs(d, stream, "ease"), "acc"), _mean(_runs(d, stream, "ranpac"), "acc")
        parts.append(f"{label} {e:.3f} vs {r:.3f}")
        met |= e >= r
    text = "defaults (3 epochs, r 16): " + ", ".join(parts)
    if ease:
        alt = []
        for stream, label in ((TASK_STREAM, "4-task"), (LONG, "stream-long")):
            es, rs = _runs(ease, stream, "ease"), _runs(ease, stream, "ranpac")
            if es and rs:
                alt.append(f"{label} {_mean(es, 'acc'):.3f} vs {_mean(rs, 'acc'):.3f} ({len(es)} seed"
                           f"{'s' if len(es) > 1 else ''})")
                met |= _mean(es, "acc") >= _mean(rs, "acc")
        text += "; the reference's 20 epochs and r 64: " + ", ".join(alt)
    return "`ease` ≥ `ranpac` on at least one stream", text, "met" if met else "not met"


def gpm_rows(short: dict[str, Any], long: dict[str, Any], related: list[dict[str, Any]]) -> list[tuple[str, str,
                                                                                                          str]]:
    cub = [r["bwt"] for r in related if r["strategy"] == "cuber"]
    gpm = [r["bwt"] for r in related if r["strategy"] == "gpm"]
    rows = [("`cuber` BWT > 0 on a stream of related tasks (three disjoint samples of Fashion-MNIST)",
             f"{100 * np.mean(cub):+.1f} points (per seed " + ", ".join(f"{100 * b:+.1f}" for b in cub) + ")",
             "met" if np.mean(cub) > 0 else "not met")]
    parts = [f"related {100 * np.mean(gpm):+.1f}"]
    worst = np.mean(gpm)
    for d, stream, label in ((short, TASK_STREAM, "4-task"), (long, LONG, "stream-long")):
        b = _mean(_runs(d, stream, "gpm"), "bwt")
        parts.append(f"{label} {100 * b:+.1f}")
        worst = min(worst, b)
    verdict = "met" if worst >= -0.01 else ("met on the related stream" if np.mean(gpm) >= -0.01 else "not met")
    rows.append(("`gpm` BWT ≥ −1 point", " points, ".join(parts) + " points", verdict +
                 ("" if worst >= -0.01 else "; not on every stream")))
    return rows


def long_row(long: dict[str, Any]) -> tuple[str, str, str]:
    per = []
    for stream in (LONG, LONG_SPLIT):
        for s in ("prototype", "ranpac"):
            rs = _runs(long, stream, s)
            per.append((stream, s, _mean(rs, "seconds"), max(r["seconds"] for r in rs)))
    total = sum(p[3] for p in per)
    text = "; ".join(f"{s} on {st.split(':', 1)[1]} {m:.0f} s (slowest seed {mx:.0f} s)" for st, s, m, mx in per)
    return ("the long stream in ≤ 20 minutes for the closed-form strategies (2 CPU cores)",
            f"{text}: all four slowest together {total / 60:.1f} min", "met" if total <= 1200 else "not met")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for k in ("short", "long", "related"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--ease")
    ap.add_argument("--time")
    a = ap.parse_args()
    load = {k: (json.load(open(getattr(a, k))) if getattr(a, k) else None)
            for k in ("short", "long", "related", "ease", "time")}
    rows = closed_form_rows(load["short"], load["time"])
    rows.append(ease_row(load["short"], load["long"], load["ease"]))
    rows += gpm_rows(load["short"], load["long"], load["related"])
    rows.append(long_row(load["long"]))
    print("| goal (issue 31) | measured | verdict |\n|---|---|---|")
    print("\n".join(f"| {g} | {m} | {v} |" for g, m, v in rows))


if __name__ == "__main__":
    main()
