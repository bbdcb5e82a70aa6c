"""The pieces of a ground-truth cell that extending it needs too: one grid point's fit, the learning-rate edge, the
plateau test, the packed test predictions, the protocol ``best`` keeps, and reading a cached cell."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the share of the training split held out for early stopping and choosing the grid point
VAL_FRACTION = 0.1


def pack_correct(correct: np.ndarray) -> str:
    """Which test examples a model got right, as base64 of the packed bits (1,000 examples: 168 characters)."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def unpack_correct(packed: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(packed), dtype=np.uint8), count=n).astype(bool)


def fit_point(model_ref: str, protocol: str, train: Any, test: Any, seed: int, options: dict[str, Any],
              point: dict[str, Any], trust_pickle: bool) -> tuple[dict[str, Any], Any]:
    """One grid point fitted with early stopping: (its record, its test predictions)."""
    from ..fit import fit

    t0 = time.perf_counter()
    r = fit(train, model_ref, protocol, test=test, seed=seed, trust_pickle=trust_pickle,
            val_fraction=VAL_FRACTION, **{**options, **point})
    m = r.metrics
    return ({**point, "val_accuracy": m.get("val_accuracy"), "test_accuracy": m["test_accuracy"],
             "epochs_run": m.get("epochs"), "best_epoch": m.get("best_epoch"),
             "stopped_early": bool(m.get("stopped_early")), "seconds": time.perf_counter() - t0},
            r.test_predictions)


def lr_edge(points: list[dict[str, Any]], chosen: int) -> str | None:
    """``highest``/``lowest`` when the chosen point's learning rate is the largest/smallest of those tried."""
    lrs = sorted({p["lr"] for p in points if "lr" in p})
    lr = points[chosen].get("lr")
    return (None if len(lrs) < 2 or lr is None else "highest" if lr == lrs[-1]
            else "lowest" if lr == lrs[0] else None)


def converged(point: dict[str, Any]) -> bool:
    """A plateau: the run stopped early, or its best epoch came before the last one."""
    return bool(point["stopped_early"] or (point["best_epoch"] is not None and point["epochs_run"] is not None
                                           and point["best_epoch"] < point["epochs_run"]))


def read_cell(path: Path) -> dict[str, Any] | None:
    """A cached cell (marked ``cached``), or None; a damaged entry is removed (and recomputed)."""
    if path.is_file():
        try:
            return {**json.loads(path.read_text()), "cached": True}
        except ValueError:
            path.unlink(missing_ok=True)
    return None


def choose_protocol(results: dict[str, dict[str, Any]]) -> str:
    """What a practitioner would deploy (``best``): the protocol with the best validation accuracy (the first of
    equals)."""
    return max(results, key=lambda p: -1.0 if results[p]["val_accuracy"] is None else results[p]["val_accuracy"])
