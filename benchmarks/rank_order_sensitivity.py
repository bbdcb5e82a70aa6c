"""How much the full ranking's own top-1 moves with the order of the examples (issue 30, item 4: where the adaptive
ranking's top-1 differs from the full ranking's, is the full ranking's top-1 itself decided?).

For each target, every model's features of the full ranking (from the feature cache: run ``transferlab rank`` or
``bench rank-adaptive`` first with the same ``$TRANSFERLAB_CACHE``) are put in a seeded random order and every metric
is scored again: what a full ranking of the same examples in another order gives (the cross-validated scores, kNN
and the linear probe, draw their folds by position). Prints, per target, the full ranking's top-1 and consensus
margin over the runner-up, and per seed the reordered ranking's top-1.

    OMP_NUM_THREADS=1 TRANSFERLAB_CACHE=... .venv/bin/python benchmarks/rank_order_sensitivity.py \\
        --targets builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures --seeds 0,1,2
"""

from __future__ import annotations

import argparse

import numpy as np

from transferlab.data import load_dataset
from transferlab.errors import MetricError
from transferlab.rank import consensus, list_metrics, metric_info, score
from transferlab.zoo import FeatureCache, extract_features, load_zoo, resolve_model


def _features(zoo: str, target: str) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray | None]], np.ndarray]:
    ds = load_dataset(target, "train")
    names, feats = [], []
    for entry in load_zoo(zoo).models:
        b = resolve_model(entry.ref)
        size = b.default_size(ds) if hasattr(b, "default_size") else None
        f = extract_features(b, ds, image_size=size, cache=FeatureCache())
        names.append(entry.display_name)
        feats.append((f.features, f.source_probs))
    return names, feats, ds.labels


def _top(names: list[str], feats: list[tuple[np.ndarray, np.ndarray | None]], y: np.ndarray,
         metrics: list[str]) -> tuple[str, float]:
    """The first model by consensus and its margin over the second."""
    table: dict[str, list[float | None]] = {m: [] for m in metrics}
    for f, p in feats:
        for m in metrics:
            try:
                table[m].append(score(m, f, y, p))
            except MetricError:
                table[m].append(None)
    cs, cr = consensus(table, len(names))
    first, second = cr.index(1), cr.index(2)
    return names[first], float(cs[first] - cs[second])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="builtin:vision")
    ap.add_argument("--targets", default="builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    metrics = [m for m in list_metrics() if metric_info(m).get("default", True)]
    for target in args.targets.split(","):
        names, feats, y = _features(args.zoo, target)
        top, margin = _top(names, feats, y, metrics)
        print(f"{target}: full ranking top-1 {top} (consensus margin {margin:.3f})", flush=True)
        for seed in (int(s) for s in args.seeds.split(",")):
            perm = np.random.default_rng(seed).permutation(len(y))
            shuffled = [(f[perm], None if p is None else p[perm]) for f, p in feats]
            top_s, margin_s = _top(names, shuffled, y[perm], metrics)
            print(f"  rows reordered (seed {seed}): top-1 {top_s} (margin {margin_s:.3f})"
                  + ("" if top_s == top else "  <- differs"), flush=True)


if __name__ == "__main__":
    main()
