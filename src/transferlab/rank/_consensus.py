"""Consensus ranking: aggregate per-metric ranks into one order.

For each metric, models with a score are ranked (1 = best, ties share the best rank). A rank is turned into a
position in [0, 1] among the models that metric scored, ``(rank - 1) / (n_scored - 1)``, so metrics that apply to
fewer models (LEEP, NCE need a source head) weigh the same. A model's consensus score is one minus its mean position
over the metrics that scored it: in [0, 1], higher is better like every metric (1: first by every metric); the
consensus rank orders models by it, ties broken by the zoo order.
"""

from __future__ import annotations

import numpy as np


def metric_ranks(scores: list[float | None]) -> list[int | None]:
    """Ranks (1 = highest score) of the non-null scores; nulls stay null."""
    idx = [i for i, s in enumerate(scores) if s is not None]
    out: list[int | None] = [None] * len(scores)
    if idx:
        neg = np.array([-float(scores[i]) for i in idx])
        r = np.searchsorted(np.sort(neg), neg, side="left") + 1  # scipy's rankdata(method="min"), without its import
        for i, ri in zip(idx, r, strict=True):
            out[i] = int(ri)
    return out


def consensus(table: dict[str, list[float | None]], n_models: int) -> tuple[list[float | None], list[int]]:
    """``table``: metric -> per-model scores. Returns (consensus score per model, consensus rank per model)."""
    positions: list[list[float]] = [[] for _ in range(n_models)]
    for scores in table.values():
        ranks = metric_ranks(scores)
        n_scored = sum(r is not None for r in ranks)
        for i, r in enumerate(ranks):
            if r is not None:
                positions[i].append(0.0 if n_scored <= 1 else (r - 1) / (n_scored - 1))
    cscore = [1.0 - float(np.mean(p)) if p else None for p in positions]
    order = sorted(range(n_models), key=lambda i: (cscore[i] is None, -cscore[i] if cscore[i] is not None else 0.0, i))
    crank = [0] * n_models
    for pos, i in enumerate(order):
        crank[i] = pos + 1
    return cscore, crank
