"""``bench rank``'s ground truth: one cell per (model, target, replicate), run by the harness, and what they say.

With ``replicates`` K > 1 every cell is fitted K times with different seeds (validation split, initialisation, data
order; the same training sample, the one the metrics score): the ground truth is the mean test accuracy over the
replicates, and each replicate's accuracies are kept so the bench can measure the ground truth's own noise
(:func:`transferlab.bench._evidence.noise_ceiling`). Replicate 0 is the cell a bench without replicates computes
(the same cache key)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._harness import Job, fmt, run_jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundTruth:
    """The ground-truth cells of every (model, target, replicate), as the harness returned them, and what they say."""

    cells: list[dict[str, Any]]
    accuracy: dict[str, dict[str, float | None]]  # target -> model -> test accuracy (mean over replicates)
    details: dict[str, dict[str, dict[str, Any]]]  # target -> model -> replicate 0's cell, less its bulky parts
    seconds: float
    checks: dict[str, Any]  # ground_truth_checks() (intervals of the replicates' mean; flags of replicate 0), and the replicates' learning-rate edges
    replicates: list[dict[str, dict[str, float | None]]]  # per replicate: target -> model -> test accuracy


def ground_truth(plan: Any, models: list[dict[str, Any]]) -> GroundTruth:
    """One fit per (model, target, replicate), run by the harness; the cells cache themselves (in the shared feature
    cache's ground_truth/, keyed by the models' identities and the data's fingerprints, which only a worker that
    resolves the model knows). Then their checks (intervals, ties, flags), whose warnings are logged."""
    from ..zoo import default_cache_dir
    from ._checks import ground_truth_checks

    training = plan.protocol != "linear_probe"
    base = {"protocol": plan.protocol, "limit": plan.limit, "seed": plan.seed, "options": plan.fit_options,
            "cache_root": str(default_cache_dir()), "grid": plan.grids, "trust_pickle": plan.trust_pickle,
            **({"lr_extend": plan.lr_extend} if training and plan.lr_extend else {})}
    # a cell's replicates one after the other: a bench stopped half-way has whole pairs (a partial noise ceiling)
    cells = [{"model_ref": m["ref"], "target": t, **base, **({"replicate": r} if r else {})}
             for t in plan.targets for m in models for r in range(plan.replicates)]
    gt_cells = run_jobs([_job(c) for c in cells], bench="rank ground truth", version=1, cache=None,
                        progress=plan.progress, backend=plan.runner, device=plan.device, precision=plan.precision,
                        figure=lambda c: f"test accuracy {fmt(c.get('test_accuracy'))}"
                                         + (" (cached)" if c.get("cached") else ""))
    per_replicate: list[dict[str, dict[str, float | None]]] = [{t: {} for t in plan.targets}
                                                               for _ in range(plan.replicates)]
    details: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in plan.targets}
    for c in gt_cells:
        r = int(c.get("replicate") or 0)
        per_replicate[r][c["target"]][c["model"]] = c["test_accuracy"]
        if r == 0:
            details[c["target"]][c["model"]] = {k: v for k, v in c.items() if k not in ("correct", "model", "target")}
    checks = ground_truth_checks(gt_cells, {m["ref"]: m["name"] for m in models}, n_boot=plan.n_boot, seed=plan.seed)
    if plan.replicates > 1:
        checks["replicates"] = replicate_checks(gt_cells, plan.replicates)
    for w in checks["warnings"]:
        log.warning("%s", w)
    return GroundTruth(cells=gt_cells, accuracy=mean_accuracy(per_replicate), details=details,
                       seconds=float(sum(c["seconds"] for c in gt_cells)), checks=checks, replicates=per_replicate)


def _job(cell: dict[str, Any]) -> Job:
    from ._ground_truth import ground_truth_cell

    r = cell.get("replicate")
    return Job(f"{cell['model_ref']} on {cell['target']}" + (f" (replicate {r + 1})" if r else ""),
               ground_truth_cell, cell)


def mean_accuracy(per_replicate: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """target -> model -> the mean test accuracy over the replicates (None where a replicate has none)."""
    out: dict[str, dict[str, float | None]] = {}
    for t, accs in per_replicate[0].items():
        out[t] = {}
        for m in accs:
            vals = [rep[t].get(m) for rep in per_replicate]
            out[t][m] = None if any(v is None for v in vals) else float(np.mean(vals))
    return out


def replicate_checks(cells: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Over every replicate's cells: how many chose a learning rate at the grid's edge (after any extension), and
    the largest spread of one cell's accuracy across its replicates."""
    trained = [c for c in cells if c.get("chosen_protocol") not in (None, "linear_probe")]
    edge = [c for c in trained if c.get("lr_at_grid_edge")]
    by_cell: dict[tuple[str, str], list[float]] = {}
    for c in cells:
        by_cell.setdefault((c["target"], c["model"]), []).append(c["test_accuracy"])
    spread = max((max(v) - min(v) for v in by_cell.values() if len(v) > 1), default=None)
    return {"k": k, "cells": len(cells), "trained_cells": len(trained), "lr_at_grid_edge": len(edge),
            "lr_at_grid_edge_highest": sum(c["lr_at_grid_edge"] == "highest" for c in edge),
            "largest_spread": spread}
