"""What an adaptation returns and records of its per-epoch history: which epoch each selector would pick, and its
regret."""

from __future__ import annotations

import math
from typing import Any

from ..models import RunResult

DEFAULT_LR = 1e-2  # head and discriminator (backbone 0.1x); chosen on the built-in shift: docs/domain.md
#: source-free runs (head; backbone 0.1x): a trained model is adapted, not trained; AdamW at 1e-2 moved it away from
#: its source knowledge within an epoch (docs/benchmarks.md, issue 32: -10 points; 1e-3: above the source model)
SOURCE_FREE_LR = 1e-3


class DomainResult(RunResult):
    """An adaptation: the network, its metrics (every selector's scores per epoch, the picks), its directory."""


def picks_of(history: list[dict[str, Any]], selectors: list[str]) -> tuple[dict[str, dict[str, Any]], float | None]:
    """(selector -> {epoch, score, oracle_accuracy, regret}, the oracle-best epoch's accuracy): each selector's best
    epoch (ties: the earliest); a selector with no finite score in any epoch (undefined, e.g. ``source_val``
    without a source hold-out) picks nothing."""
    picks = {}
    for s in selectors:
        key = "val_accuracy" if s == "source_val" else s
        vals = [(row.get(key), row["epoch"]) for row in history if row.get(key) is not None
                and math.isfinite(row[key])]
        if vals:
            best_epoch = max(vals, key=lambda v: (v[0], -v[1]))[1]
            row = history[best_epoch - 1]
            picks[s] = {"epoch": best_epoch, "score": row.get(key), "oracle_accuracy": row.get("oracle_accuracy")}
    oracle_best = max((r.get("oracle_accuracy") for r in history if r.get("oracle_accuracy") is not None),
                      default=None)
    for p in picks.values():
        if oracle_best is not None and p["oracle_accuracy"] is not None:
            p["regret"] = oracle_best - p["oracle_accuracy"]
    return picks, oracle_best


def kept_checkpoint(select: str, best_epoch: int | None, picks: dict[str, dict[str, Any]], guard: Any, net: Any,
                    history: list[dict[str, Any]], oracle_best: float | None) -> tuple[int | None, float | None,
                                                                                      dict[str, Any] | None]:
    """(the kept epoch, its oracle accuracy, the fallback note or None). ``guarded`` with no passing epoch falls
    back to the guard's reference (its weights restored into ``net``; epoch 0: the source model) and says so."""
    if select == "guarded" and best_epoch is None:
        note = guard.fall_back_(net)
        e = guard.epoch
        acc = guard.oracle_accuracy if e == 0 else (history[e - 1].get("oracle_accuracy") if e else None)
        picks["guarded"] = {"epoch": e, "score": None, "oracle_accuracy": acc, **note}
        if oracle_best is not None and acc is not None:
            picks["guarded"]["regret"] = oracle_best - acc
        return e, acc, note
    return best_epoch, picks.get(select, {}).get("oracle_accuracy"), None
