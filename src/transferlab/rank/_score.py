"""``score`` and ``list_metrics``: the functional API over the metric registry."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import numpy as np

from ..errors import MetricError
from ._registry import METRICS
from ._stats import FeatureStats
from ._validate import ProbStats, as_features, as_labels, source_prob_stats


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


#: the arguments every metric takes that are not options
_INPUTS = ("features", "labels", "source_probs", "stats")


def _named_options(metric: str) -> tuple[dict[str, Any], bool]:
    params = inspect.signature(METRICS.get(metric)).parameters
    return ({n: p for n, p in params.items() if n not in _INPUTS and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                 p.KEYWORD_ONLY)},
            any(p.kind is p.VAR_KEYWORD for p in params.values()))


def check_metric_options(metric: str, options: dict[str, Any]) -> None:
    """An option ``metric`` does not take is one :class:`TransferlabError` naming it and the metric's options, before
    any work (not a ``TypeError`` from deep inside). A metric that passes further options on to another metric
    (``ped``'s ``backend``) takes that one's options too."""
    from ..errors import TransferlabError

    named, passes_on = _named_options(metric)
    if passes_on and "backend" in named and options.get("backend", named["backend"].default) in METRICS:
        named = {**_named_options(options.get("backend", named["backend"].default))[0], **named}
    unknown = [k for k in options if k not in named]
    if unknown:
        known = ", ".join(f"{n}={p.default!r}" for n, p in named.items()) or "none"
        raise TransferlabError(f"{metric}: no option {unknown[0]!r}; its options (with defaults): {known}")


def score_prepared(metric: str, stats: FeatureStats | ProbStats | None, labels: np.ndarray,
                   source_probs: np.ndarray | None, options: dict[str, Any]) -> float:
    """Score validated inputs: ``labels`` contiguous ``0..C-1``; ``stats`` shared across metrics of one model (a
    :class:`FeatureStats`, or for metrics of the source head's probabilities a :class:`ProbStats`)."""
    fn = METRICS.get(metric)
    features = stats.f if isinstance(stats, FeatureStats) else None
    kw = {"stats": stats} if _takes_stats(metric) else {}
    try:
        with np.errstate(all="ignore"):  # overflow and 0/0 end as a non-finite score: refused below with the cause
            value = float(fn(features, labels, source_probs, **kw, **options))
    except MetricError:
        raise
    except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise MetricError(f"{metric} cannot be computed on these features ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}){_degenerate(stats, labels)}") from None
    if not math.isfinite(value):
        raise MetricError(f"{metric} gave a non-finite score ({value}){_degenerate(stats, labels)}")
    return value


def _degenerate(stats: FeatureStats | None, labels: np.ndarray) -> str:
    """Why features may defeat a metric, when it shows: constant features, a scale far from 1, one example in a
    class."""
    why = []
    if isinstance(stats, FeatureStats) and len(stats.f):
        f = stats.f
        spread = float(np.max(np.ptp(f, axis=0))) if f.size else 0.0
        scale = float(np.max(np.abs(f))) if f.size else 0.0
        if spread == 0.0:
            why.append("the features are constant: every example gives the same vector")
        elif scale < 1e-12 or scale > 1e12:
            why.append(f"the features' magnitude is extreme (max |x| = {scale:.1e})")
    counts = np.bincount(labels)
    if counts.size and counts.min() < 2:
        why.append(f"{int(np.sum(counts < 2))} class(es) have a single example")
    return ": " + "; ".join(why) if why else ""


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
    check_metric_options(metric, options)
    if needs_source_probs(metric):
        n = len(np.asarray(labels))
        y, _ = as_labels(labels, n)
        ps = source_prob_stats(source_probs, n, metric)
        return score_prepared(metric, ps, y, ps.p, options)
    f = as_features(features)
    y, _ = as_labels(labels, len(f))
    return score_prepared(metric, FeatureStats(f), y, None, options)
