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


def pseudo_labels(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Labels for unlabelled examples: the argmax of the teachers' averaged *standardised* log-probabilities (each
    row z-scored, so that a confident teacher does not outvote the others by its confidence alone). A heuristic:
    two teachers that disagree cannot be told apart without labels; the majority of several can."""
    z = [np.log(np.clip(p, 1e-12, None)) for p in probs]
    z = [(x - x.mean(1, keepdims=True)) / (x.std(1, ddof=1, keepdims=True) + 1e-7) for x in z]
    return np.mean(z, axis=0).argmax(1)


def scoring_data(setup: Any, on: str) -> tuple[Any, str, bool]:
    """(the examples multi_weighted scores its teachers on, their name, whether their labels are the teachers'
    averaged prediction): ``on`` ``heldout``, ``unlabelled``, ``val`` or ``auto`` (the first that exists). Never
    the student's training part: teachers fitted on the same data have seen it."""
    from ..errors import TransferlabError

    order = ("heldout", "unlabelled", "val") if on == "auto" else (on,)
    for name in order:
        ds = getattr(setup, name)
        if ds is not None and len(ds):
            if name == "val":
                setup.warnings.append("multi_weighted scored its teachers on the student's 10 % hold-out: unseen "
                                      "only if no teacher was fitted on this data; give heldout= (examples no "
                                      "teacher trained on) or unlabelled examples")
            return ds, name, name == "unlabelled"
    raise TransferlabError(f"multi_weighted has no data to score its teachers on (weight_data={on}): give heldout "
                           "examples no teacher trained on (--heldout), unlabelled examples (--unlabelled), or "
                           "enough labelled data for a hold-out")


def by_rank_scores(metric: str, temperature: float,
                   on: str = "auto") -> Callable[[Any], tuple[list[float], dict[str, Any]]]:
    """A method's ``teacher_weights`` hook: each teacher's pooled features and class probabilities on the examples
    :func:`scoring_data` picks (un-augmented), scored by ``metric``, turned into softmax(score / ``temperature``).
    Unlabelled examples take the teachers' averaged prediction as their labels."""

    def weights(setup: Any) -> tuple[list[float], dict[str, Any]]:
        from ..models import features_and_probs

        ds, name, pseudo = scoring_data(setup, on)
        bs = max(64, setup.batch_size)
        fp = [features_and_probs(t.net, t.inputs(ds), t.order, bs) for t in setup.teachers]
        labels = pseudo_labels([p for _, p in fp]) if pseudo else np.asarray(ds.labels)
        scores, per_metric = teacher_scores([f for f, _ in fp], [p for _, p in fp], labels, metric)
        w = softmax_weights(scores, temperature)
        log.info("teacher weights (%s on %s): %s", metric, name, ", ".join(f"{x:.3f}" for x in w))
        return w, {"metric": metric, "scores": scores, "per_metric": per_metric, "scored_on": name,
                   "n_scored": len(ds)}

    return weights
