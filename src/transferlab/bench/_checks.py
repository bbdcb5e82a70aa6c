"""Sanity checks of a ground truth: is it trained, and can it tell the models apart?

- A trained cell below the linear probe on its own frozen features (the same training examples) is under-trained:
  whatever the metrics say about it is measured against a number that is not what the model can reach.
- A grid point that ran to its last epoch without a plateau may not have converged.
- A test split too small to separate the models: when the bootstrap intervals of most pairs of models' accuracies
  overlap, the order of the models is mostly noise, and so is any τ computed against it.
- Models tied at an accuracy: their order is arbitrary.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from ._ground_truth import unpack_correct

#: warn when more than this fraction of model pairs have overlapping accuracy intervals
OVERLAP_WARN = 0.5


def accuracy_intervals(correct: dict[str, np.ndarray], *, n_boot: int = 1000, seed: int = 0,
                       ci: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap interval of each model's test accuracy, resampling test examples (the same resamples for
    every model, as the models are scored on the same examples)."""
    if not correct or n_boot < 1:
        return {}
    n = len(next(iter(correct.values())))
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    return {m: [float(v) for v in np.quantile(c[idx].mean(1), q)] for m, c in correct.items()}


def overlap_fraction(intervals: dict[str, list[float]]) -> float | None:
    """The fraction of model pairs whose intervals overlap (None for fewer than two models)."""
    pairs = list(combinations(intervals.values(), 2))
    if not pairs:
        return None
    return float(np.mean([a[0] <= b[1] and b[0] <= a[1] for a, b in pairs]))


def _replicate_means(cells: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """model -> the per-example share of its replicates that were right, and its mean test accuracy."""
    rights: dict[str, list[np.ndarray]] = {}
    accs: dict[str, list[float]] = {}
    for c in cells:
        accs.setdefault(c["model"], []).append(c["test_accuracy"])
        if c.get("correct"):
            rights.setdefault(c["model"], []).append(unpack_correct(c["correct"], c["n_test"]).astype(float))
    return ({m: np.mean(v, axis=0) for m, v in rights.items()},
            {m: float(np.mean(v)) for m, v in accs.items()})


def ground_truth_checks(cells: list[dict[str, Any]], names: dict[str, str], *, n_boot: int = 1000,
                        seed: int = 0) -> dict[str, Any]:
    """Per target: each model's accuracy interval, the overlap fraction and the ties; and the flagged cells
    (under-trained, not converged, fallbacks) of replicate 0. ``warnings``: one plain sentence per problem.
    With replicates (cells with ``replicate`` > 0), a model's accuracy and its interval are those of the mean over
    its replicates (each test example scored by the share of replicates that got it right), the number the bench
    ranks against."""
    by_target: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by_target.setdefault(c["target"], []).append(c)
    out: dict[str, Any] = {"targets": {}, "under_trained": [], "not_converged": [], "fallbacks": [], "grid_edge": [],
                           "warnings": []}
    for target, every in by_target.items():
        cs = [c for c in every if not c.get("replicate")]
        correct, acc = _replicate_means(every)
        intervals = accuracy_intervals(correct, n_boot=n_boot, seed=seed)
        overlap = overlap_fraction(intervals)
        groups: dict[float, list[str]] = {}
        for m, a in acc.items():
            groups.setdefault(round(a, 12), []).append(m)
        ties = [sorted(ms) for a, ms in sorted(groups.items(), reverse=True) if len(ms) > 1]
        n_test = cs[0]["n_test"]
        out["targets"][target] = {"intervals": intervals, "overlap_fraction": overlap, "ties": ties,
                                  "n_test": n_test}
        if overlap is not None and overlap > OVERLAP_WARN:
            out["warnings"].append(
                f"{target}: the test split ({n_test} examples) is too small to separate the models: the 95 % "
                f"bootstrap intervals of {overlap:.0%} of model pairs overlap, so the order of the models, and τ "
                "against it, is mostly noise there.")
        for tie in ties:
            out["warnings"].append(f"{target}: {len(tie)} models tie at accuracy {acc[tie[0]]:.4f} "
                                   f"({', '.join(names.get(m, m) for m in tie)}): their order is arbitrary.")
        for c in cs:
            name = names.get(c["model"], c["model"])
            if c.get("fallback"):
                out["fallbacks"].append({"target": target, "model": c["model"], "reason": c["fallback"]})
            if c.get("under_trained"):
                out["under_trained"].append({"target": target, "model": c["model"], "accuracy": c["test_accuracy"],
                                             "probe_accuracy": c["probe_accuracy"]})
                out["warnings"].append(
                    f"{target}: {name} is under-trained: {c['chosen_protocol']} reached {c['test_accuracy']:.4f}, "
                    f"below the linear probe on its frozen features ({c['probe_accuracy']:.4f}); more epochs or "
                    "another learning rate would raise it.")
            if c.get("converged") is False:
                out["not_converged"].append({"target": target, "model": c["model"]})
            if c.get("lr_at_grid_edge"):
                out["grid_edge"].append({"target": target, "model": c["model"], "edge": c["lr_at_grid_edge"]})
    if out["not_converged"]:
        out["warnings"].append(
            f"{len(out['not_converged'])} cell(s) improved until their last epoch (no plateau: more --epochs may "
            "raise them): " + ", ".join(f"{names.get(c['model'], c['model'])} on {c['target']}"
                                          for c in out["not_converged"][:6])
            + (" ..." if len(out["not_converged"]) > 6 else "") + ".")
    if out["grid_edge"]:
        high = sum(e["edge"] == "highest" for e in out["grid_edge"])
        out["warnings"].append(
            f"{len(out['grid_edge'])} cell(s) chose the grid's {'highest' if high else 'lowest'} learning rate"
            + (f" ({high} the highest, {len(out['grid_edge']) - high} the lowest)" if 0 < high < len(out["grid_edge"])
               else "") + ": the best may lie beyond the grid; extend it (--grid) to be sure.")
    if out["fallbacks"]:
        models = sorted({names.get(f["model"], f["model"]) for f in out["fallbacks"]})
        out["warnings"].append(f"{', '.join(models)}: cannot be trained; the linear probe on its features stands in "
                               "as its ground truth (marked as a fallback).")
    return out
