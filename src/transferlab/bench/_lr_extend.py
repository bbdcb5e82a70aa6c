"""A ground-truth cell whose chosen learning rate is the grid's largest (or smallest) tries more beyond it.

On the built-in fine-tuning benchmark 44 of 56 cells chose an edge of the default grid (41 its largest): the best
learning rate lay outside it, and those cells' ground truth was the grid's, not the model's. Rather than a wider grid
for every cell (each point is a full fit), a cell at an edge continues the grid's outer ratio beyond that edge, at the
chosen point's other settings (its head multiplier), for up to ``steps`` more points, and stops as soon as a new point
does not beat the best validation accuracy. The learning rate is then interior (a point beyond it was tried and lost)
unless every step won.

The extension is cached beside the cell it extends (``<cell key>-lr<steps>.json``), so a cell computed without it
(an existing cache) is reused as it is and only the new points are fitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_json_atomic
from ._cells import choose_protocol, converged, fit_point, lr_edge, pack_correct, read_cell


@dataclass(frozen=True)
class Extension:
    """What extending one cell reads."""

    model_ref: str
    train: Any
    test: Any
    seed: int  # the fit's (the replicate's)
    options: dict[str, Any]
    trust_pickle: bool
    steps: int  # at most this many learning rates beyond the edge
    path: Path  # where the extended cell is cached


def next_lr(points: list[dict[str, Any]], edge: str) -> float:
    """The learning rate beyond ``edge`` (``highest``/``lowest``): the grid's outer ratio continued, rounded to 3
    significant digits (3e-3 after 9e-4 gives 1e-2)."""
    lrs = sorted({float(p["lr"]) for p in points if "lr" in p})
    if edge == "highest":
        return float(f"{lrs[-1] * lrs[-1] / lrs[-2]:.3g}")
    return float(f"{lrs[0] * lrs[0] / lrs[1]:.3g}")


#: what a grid point's record adds to its settings (:func:`fit_point`)
_RECORDED = frozenset({"val_accuracy", "test_accuracy", "epochs_run", "best_epoch", "stopped_early", "seconds",
                       "extension"})


def _extend_run(run: dict[str, Any], protocol: str, x: Extension) -> tuple[dict[str, Any], str | None]:
    """One protocol's grid continued beyond its edge: (the run with the new points, the new chosen point's packed
    test predictions, or None when no new point won)."""
    points = list(run["grid"])
    chosen, correct = run["chosen"], None
    added: list[float] = []
    seconds = 0.0
    edge = run["lr_at_grid_edge"]
    while edge and len(added) < x.steps:
        lr = next_lr(points, edge)
        point = {**{k: v for k, v in points[chosen].items() if k not in _RECORDED}, "lr": lr}
        rec, predictions = fit_point(x.model_ref, protocol, x.train, x.test, x.seed, x.options, point, x.trust_pickle)
        points.append({**rec, "extension": True})
        added.append(lr)
        seconds += rec["seconds"]
        best = -1.0 if points[chosen]["val_accuracy"] is None else points[chosen]["val_accuracy"]
        if rec["val_accuracy"] is None or rec["val_accuracy"] <= best:
            break  # beyond the edge is no better: the chosen learning rate is now interior
        chosen, correct = len(points) - 1, pack_correct(predictions == x.test.labels)
        edge = lr_edge(points, chosen)
    c = points[chosen]
    return ({**run, "grid": points, "chosen": chosen, "test_accuracy": c["test_accuracy"],
             "val_accuracy": c["val_accuracy"], "converged": converged(c), "lr_at_grid_edge": lr_edge(points, chosen),
             "extended_lrs": added, "train_seconds": (run.get("train_seconds") or 0.0) + seconds}, correct)


def extended_cell(cell: dict[str, Any], x: Extension) -> dict[str, Any]:
    """``cell`` with every trained protocol at a learning-rate edge extended (cached at ``x.path``), the protocol
    chosen again (``best``), and the cell's accuracy, predictions and flags those of the chosen point."""
    cached = read_cell(x.path)
    if cached is not None:
        return {**cached, "cached": bool(cell.get("cached"))}
    t0 = time.perf_counter()
    runs, corrects = dict(cell["runs"]), {}
    for p, run in cell["runs"].items():
        if p != "linear_probe" and run.get("lr_at_grid_edge"):
            runs[p], corrects[p] = _extend_run(run, p, x)
    chosen = cell["chosen_protocol"]
    if cell["protocol"] == "best" and not cell.get("fallback"):
        chosen = choose_protocol(runs)
    r, trained = runs[chosen], chosen != "linear_probe"
    out = {**cell, "chosen_protocol": chosen, "test_accuracy": r["test_accuracy"], "val_accuracy": r["val_accuracy"],
           "correct": corrects.get(chosen) or cell["correct"],
           "under_trained": bool(trained and r["test_accuracy"] < cell["probe_accuracy"]),
           "converged": r.get("converged") if trained else None,
           "lr_at_grid_edge": r.get("lr_at_grid_edge") if trained else None, "runs": runs,
           "lr_extension": {p: runs[p].get("extended_lrs", []) for p in corrects},
           "seconds": cell["seconds"] + time.perf_counter() - t0,
           "train_seconds": sum(res.get("train_seconds") or 0.0 for res in runs.values()) or None}
    out.pop("cached", None)
    write_json_atomic(x.path, out)
    return {**out, "cached": False}
