"""Issue 32 item 1: source-free shot / nrc / aad from a source_only model on digits -> digits-m (small), against the
source model and against re-estimating its batch-norm statistics on the target alone (the same loop at a learning
rate of 1e-12: "bn-stats"), per seed. Each run is a `domain` output under --out (an existing output is read, not
rerun).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_domain_source_free.py --out runs/sfda-32 \
        [--seeds 0,1,2] [--lr 1e-3] [--label-smoothing 0.1] [--epochs 5] [--limit 600]

The source model: `domain builtin:digits builtin:digits-m --method source_only --select source_val` (8 epochs,
--label-smoothing as given); each method: `domain --source-model SRC builtin:digits-m --method M` (kept by the
default selector, `guarded`). Target labels only fill the oracle columns. Prints a Markdown table; writes
--out/summary.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from transferlab.data import load_dataset
from transferlab.domain import adapt

METHODS = ("bn-stats", "shot", "nrc", "aad")


def _run(out: Path, **kw) -> dict:
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    return adapt(out=out, overwrite=True, **kw).metrics


AGREEMENT = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


def _agreement_picks(m: dict) -> dict[str, float]:
    """The target accuracy `guarded` would keep with each ``min_agreement`` (recomputed from the run's per-epoch
    parts: the best base score among epochs whose balance passed and whose agreement with the source model's
    predictions reaches it; none: the source model)."""
    out = {}
    for t in AGREEMENT:
        ok = [(x["guarded.base"], -x["epoch"], x["oracle_accuracy"]) for x in m["history"]
              if x.get("guarded.passed", 0) >= 1 and x.get("guarded.agreement", 1.0) >= t]
        out[f"{t:g}"] = max(ok)[-1] if ok else m["source_model_accuracy_oracle"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/sfda-32")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lr", type=float, default=None, help="source-free learning rate (default: domain's)")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=600)
    a = ap.parse_args()
    out = Path(a.out)
    test = load_dataset("builtin:digits-m", "test")
    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in map(int, a.seeds.split(",")):
        src = load_dataset("builtin:digits", "train").stratified_sample(a.limit, seed=seed)
        tgt = load_dataset("builtin:digits-m", "train")
        tgt = tgt.subset(np.sort(np.random.default_rng(seed).choice(len(tgt), a.limit, replace=False)))
        source = out / f"source-ls{a.label_smoothing:g}-s{seed}"
        _run(source, source=src, target=tgt, model="builtin:small_resnet_shapes", method="source_only",
             select="source_val", epochs=8, image_size=32, seed=seed, target_test=test,
             label_smoothing=a.label_smoothing)
        for m in METHODS:
            lr = 1e-12 if m == "bn-stats" else a.lr
            tag = f"{m}-ls{a.label_smoothing:g}-lr{lr if lr is not None else 'default'}-s{seed}"
            r = _run(out / tag, source=None, target=tgt, method="shot" if m == "bn-stats" else m,
                     source_model=source, epochs=a.epochs, image_size=32, seed=seed, target_test=test, lr=lr,
                     **({"pseudo_labels": False} if m == "bn-stats" else {}))
            h = r["history"]
            rows[m].append({"seed": seed, "source": r["source_model_accuracy_oracle"],
                            "kept": r["target_accuracy_oracle"], "best": max(x["oracle_accuracy"] for x in h),
                            "fell_back": bool(r.get("guarded_fallback")), "seconds": r["train_seconds"],
                            "agreement": [x.get("guarded.agreement") for x in h],
                            "guarded": _agreement_picks(r),
                            "per_epoch": [round(x["oracle_accuracy"], 4) for x in h]})
    print(f"\nlabel smoothing {a.label_smoothing:g}, lr {a.lr or 'default'}, {a.epochs} epochs, {a.limit} examples\n")
    print("| method | seeds | source model | kept by guarded | oracle's best epoch | kept vs source model (points; per "
          "seed) | fell back | train s (median) |\n|---|---|---|---|---|---|---|---|")
    for m, rs in rows.items():
        d = [100 * (x["kept"] - x["source"]) for x in rs]
        print(f"| {m} | {len(rs)} | {np.mean([x['source'] for x in rs]):.3f} | {np.mean([x['kept'] for x in rs]):.3f}"
              f" | {np.mean([x['best'] for x in rs]):.3f} | {np.mean(d):+.1f} ({', '.join(f'{v:+.1f}' for v in d)})"
              f" | {sum(x['fell_back'] for x in rs)} | {np.median([x['seconds'] for x in rs]):.0f} |")
    print("\nguarded with min_agreement t (kept target accuracy minus the source model's, points, mean over seeds)\n")
    print("| method | " + " | ".join(f"t = {t:g}" for t in AGREEMENT) + " |\n|---|" + "---|" * len(AGREEMENT))
    for m, rs in rows.items():
        print(f"| {m} | " + " | ".join(f"{np.mean([100 * (x['guarded'][f'{t:g}'] - x['source']) for x in rs]):+.1f}"
                                      for t in AGREEMENT) + " |")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"summary-ls{a.label_smoothing:g}-lr{a.lr or 'default'}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
