"""``score`` and ``list_metrics``: the functional API over the metric registry."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import numpy as np

from ._registry import METRICS
from ._stats import FeatureStats
from ._validate import as_features, as_labels, as_source_probs


def list_metrics(pattern: str | None = None) -> list[str]:
    """Names of the registered transferability metrics (optionally filtered by a glob pattern)."""
    return METRICS.list(pattern)


def metric_info(name: str) -> dict[str, Any]:
    return METRICS.meta(name)


def needs_source_probs(name: str) -> bool:
    return metric_info(name).get("needs") == "source_probs"


@functools.cache
def _takes_stats(name: str) -> bool:
    return "stats" in inspect.signature(METRICS.get(name)).parameters


def score_prepared(metric: str, stats: FeatureStats | None, labels: np.ndarray, source_probs: np.ndarray | None,
                   options: dict[str, Any]) -> float:
    """Score validated inputs: ``labels`` contiguous ``0..C-1``; ``stats`` shared across metrics of one model."""
    fn = METRICS.get(metric)
    if _takes_stats(metric):
        return float(fn(stats.f, labels, source_probs, stats=stats, **options))
    return float(fn(None if stats is None else stats.f, labels, source_probs, **options))


def score(
    metric: str,
    features: np.ndarray | None,
    labels: np.ndarray,
    source_probs: np.ndarray | None = None,
    **options: Any,
) -> float:
    """Score one model's target features with one metric (higher is better).

    ``features`` is ``[N, D]`` (any float dtype; computed in float64), ``labels`` integer ``[N]``, ``source_probs``
    the source head's probabilities ``[N, Cs]`` for metrics that need them (``leep``, ``nce``).
    Raises :class:`~transferlab.errors.MetricError` on non-finite inputs, N < C, a single class, or missing inputs.
    """
    METRICS.get(metric)  # unknown name: a clear error listing the known ones
    if needs_source_probs(metric):
        n = len(np.asarray(labels))
        y, _ = as_labels(labels, n)
        return score_prepared(metric, None, y, as_source_probs(source_probs, n, metric), options)
    f = as_features(features)
    y, _ = as_labels(labels, len(f))
    return score_prepared(metric, FeatureStats(f), y, None, options)
