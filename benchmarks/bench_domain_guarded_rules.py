"""Issue 32 items 2-4: the `guarded` selector's rules across a seed's checkpoints on the three built-in shifts, and
the SAM (SDAT) and Pareto (ParetoDA) rows, from small `bench domain` runs (cached: a rerun only reads them).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_domain_guarded_rules.py --out runs/bench-domain-32 \
        [--seeds 0,1] [--epochs 4] [--limit 600] [--trade-offs 1,3] [--no-extras]

Rules (each picks one checkpoint among a seed's source_only, dann and mcc runs x epochs; the reference is the seed's
source_only run at its source_val pick, its checkpoint the fallback): the tolerance on the source hold-out accuracy
(0.02, 0.01, 0.005, 0) with transfer_score ranking, and `source_first` (the admitted checkpoints ranked by source
accuracy, transfer_score breaking ties); against `source_val` over the same checkpoints. Regret: the oracle-best
checkpoint's target accuracy minus the pick's (target labels only report it). Prints a Markdown table per shift and
the mean; writes --out/rules.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from transferlab.bench import bench_domain
from transferlab.bench._domain import guarded_pick

SHIFTS = [("builtin:digits", "builtin:digits-m"), ("builtin:shapes", "builtin:shapes-sketch"),
          ("builtin:digits-m", "builtin:digits")]
RULES = {"tol 0.02 (old default)": dict(tolerance=0.02), "tol 0.01": dict(tolerance=0.01),
         "tol 0.005": dict(tolerance=0.005), "tol 0": dict(tolerance=0.0),
         "source_first, tol 0.02": dict(tolerance=0.02, order="source_first")}


def source_val_pick(runs: list[dict]) -> dict:
    rows = [row for r in runs for row in r["history"] if row.get("oracle_accuracy") is not None]
    best = max(row["oracle_accuracy"] for row in rows)
    vals = [row["val_accuracy"] for row in rows]
    acc = rows[int(np.argmax(vals))]["oracle_accuracy"]  # ties: the first in run order, as bench domain's table
    so = next(r["picks"]["source_val"]["oracle_accuracy"] for r in runs if r["method"] == "source_only")
    return {"accuracy": acc, "regret": best - acc, "fell_back": False, "source_only": so}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench-domain-32")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--trade-offs", default="1", help="of the base runs (dann, mcc); the SAM and Pareto runs: 1")
    ap.add_argument("--no-extras", action="store_true", help="skip the SAM and Pareto runs")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    common = dict(seeds=seeds, trade_offs=[1.0], epochs=a.epochs, limit=a.limit, image_size=32, supervised=False)
    r = bench_domain("builtin:small_resnet_shapes", out=Path(a.out) / "base", shifts=SHIFTS,
                     methods="source_only,dann,mcc", method_options={"dann": {"hidden": 256}}, progress=True,
                     **{**common, "trade_offs": [float(t) for t in a.trade_offs.split(",")]})
    out: dict = {"rules": {}, "extras": {}}
    for shift in {run["shift"] for run in r.runs}:
        per = {}
        for name, kw in {"source_val": None, **RULES}.items():
            picks = []
            for seed in seeds:
                runs = [x for x in r.runs if x["shift"] == shift and x["seed"] == seed]
                picks.append(source_val_pick(runs) if kw is None else guarded_pick(runs, **kw))
            per[name] = {"accuracy": float(np.mean([p["accuracy"] for p in picks])),
                         "regret": float(np.mean([p["regret"] for p in picks])),
                         "vs_source_only": float(np.mean([p["accuracy"] - p["source_only"] for p in picks])),
                         "fell_back": int(sum(p["fell_back"] for p in picks)),
                         "per_seed_regret": [round(p["regret"], 4) for p in picks]}
        out["rules"][shift] = per
    for shift, per in sorted(out["rules"].items()):
        print(f"\n{shift} ({len(seeds)} seeds)\n\n| rule | pick acc. | regret | vs source_val's regret | vs "
              "source-only | fell back |\n|---|---|---|---|---|---|")
        sv = per["source_val"]["regret"]
        for name, v in per.items():
            print(f"| {name} | {v['accuracy']:.3f} | {v['regret']:.3f} {v['per_seed_regret']} | "
                  f"{(v['regret'] - sv) * 100:+.1f} pts | {v['vs_source_only'] * 100:+.1f} pts | {v['fell_back']} |")
    if not a.no_extras:  # SAM and Pareto on the hardest shift, next to the base runs' dann and source_only
        for name, opts in {"dann+sam": {"sam": 0.02}, "dann+pareto": {"weighting": "pareto"}}.items():
            x = bench_domain("builtin:small_resnet_shapes", out=Path(a.out) / name.replace("+", "-"),
                             shifts=SHIFTS[:1], methods="dann", method_options={"dann": {"hidden": 256, **opts}},
                             progress=True, **common)
            out["extras"][name] = [{"seed": run["seed"], "kept": run["kept_accuracy"], "best": run["oracle_best"],
                                    "seconds": run["seconds"]} for run in x.runs]
        base = {m: [{"seed": run["seed"], "kept": run["kept_accuracy"], "best": run["oracle_best"],
                     "seconds": run["seconds"]} for run in r.runs if run["method"] == m
                    and run["shift"] == "digits→digits-m" and run["trade_off"] == 1.0] for m in ("source_only", "dann")}
        print("\ndigits→digits-m: kept (guarded) / oracle-best epoch, mean over seeds; seconds per run (median)")
        for name, rows in {**base, **out["extras"]}.items():
            print(f"| {name} | {np.mean([x['kept'] for x in rows]):.3f} | {np.mean([x['best'] for x in rows]):.3f} "
                  f"| {[round(x['kept'], 3) for x in rows]} | {np.median([x['seconds'] for x in rows]):.0f} |")
        out["extras"].update({f"base {k}": v for k, v in base.items()})
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"rules-t{a.trade_offs}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
