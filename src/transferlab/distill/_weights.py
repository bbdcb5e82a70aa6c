"""Teacher weights for ``multi_weighted``: how well each teacher's features transfer to the data, by the rank
metrics, turned into a softmax over the teachers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: the metrics of the default ``consensus`` (cheap, and all of them read features or the teachers' own heads)
CONSENSUS_METRICS = ("logme", "leep", "nce", "sfda", "gbc", "knn")


def softmax_weights(scores: Sequence[float], temperature: float) -> list[float]:
    s = np.asarray(scores, dtype=np.float64) / temperature
    e = np.exp(s - s.max())
    return (e / e.sum()).tolist()


def teacher_scores(features: Sequence[np.ndarray], probs: Sequence[np.ndarray], labels: np.ndarray,
                   metric: str) -> tuple[list[float], dict[str, list[float | None]]]:
    """(one score per teacher, the per-metric table). ``metric``: ``consensus`` (the rank consensus of
    :data:`CONSENSUS_METRICS`, in [0, 1]) or one metric's name (its raw score). ``probs``: each teacher's class
    probabilities on the data (its own head: the source probabilities of LEEP and NCE)."""
    from ..errors import TransferlabError
    from ..rank import consensus, metric_info, score

    def needs_source_probs(name: str) -> bool:
        return metric_info(name).get("needs") == "source_probs"

    names = CONSENSUS_METRICS if metric == "consensus" else (metric,)
    table: dict[str, list[float | None]] = {}
    for name in names:
        row: list[float | None] = []
        for f, p in zip(features, probs, strict=True):
            try:
                v = score(name, None if needs_source_probs(name) else f, labels,
                          source_probs=p if needs_source_probs(name) else None)
                row.append(float(v) if np.isfinite(v) else None)
            except TransferlabError as exc:
                log.warning("weight metric %s failed for a teacher: %s", name, exc)
                row.append(None)
        table[name] = row
    if metric == "consensus":
        cs, _ = consensus(table, len(features))
        out = [c if c is not None else 0.0 for c in cs]
    else:
        if any(v is None for v in table[metric]):
            raise TransferlabError(f"weight_metric {metric} could not score every teacher; use consensus")
        out = [float(v) for v in table[metric]]  # type: ignore[arg-type]
    return out, table


def by_rank_scores(metric: str, temperature: float) -> Callable[[Any], tuple[list[float], dict[str, Any]]]:
    """A method's ``teacher_weights`` hook: each teacher's pooled features and class probabilities on the training
    examples (un-augmented), scored by ``metric``, turned into softmax(score / ``temperature``)."""

    def weights(setup: Any) -> tuple[list[float], dict[str, Any]]:
        from ..models import features_and_probs

        train, bs = setup.train, max(64, setup.batch_size)
        fp = [features_and_probs(t.net, t.inputs(train), t.order, bs) for t in setup.teachers]
        scores, per_metric = teacher_scores([f for f, _ in fp], [p for _, p in fp], np.asarray(train.labels), metric)
        w = softmax_weights(scores, temperature)
        log.info("teacher weights (%s): %s", metric, ", ".join(f"{x:.3f}" for x in w))
        return w, {"metric": metric, "scores": scores, "per_metric": per_metric}

    return weights
