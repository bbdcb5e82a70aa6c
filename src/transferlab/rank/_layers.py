"""``rank(..., layers="best")``: every metric scored on every layer of a model, each metric's best layer kept.

As transformer-ranker's ``bestlayer`` (flairNLP/transformer-ranker, commit 43b42c1: one score per hidden layer, the
maximum kept); the layers are :mod:`transferlab.zoo._layers`'s (the last is the model's output, so a metric's best
layer scores at least what ``last`` gives it). Metrics that read the source head's probabilities and not the features
(LEEP, NCE...) do not depend on the layer: they are scored once. On a tie the deeper layer wins (the output, when it
ties). Which layer won, and every layer's score, go into the model's metadata.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from ._score import needs_source_probs

#: (setup, zoo entry, features, options, score-key suffix) -> (scores, failures, seconds, cold seconds)
ScoreMetrics = Callable[..., tuple[dict[str, float | None], dict[str, str], dict[str, float], dict[str, float | None]]]


def score_layers(setup: Any, entry: Any, feats: Any, layer_opts: list[dict[str, dict[str, Any]]],
                 score_metrics: ScoreMetrics) -> tuple[dict[str, float | None], dict[str, str], dict[str, float],
                                                       dict[str, float | None], dict[str, Any]]:
    """(scores, failures, seconds, cold seconds, metadata) of one model from ``feats.layers``: ``score_metrics``
    (rank's metric loop, which caches each layer's scores under its own keys) on each layer with that layer's
    options (``layer_opts[i]``, or the one set for every layer); per metric the best layer's score, the seconds of
    every layer summed. A metric fails only where it failed on every layer."""
    layered = [m for m in setup.metrics if not needs_source_probs(m)]
    scores, failures, seconds, cold = score_metrics(
        dataclasses.replace(setup, metrics=[m for m in setup.metrics if needs_source_probs(m)]), entry, feats,
        layer_opts[-1])
    per_layer = []
    for i, layer in enumerate(feats.layers):
        opts = layer_opts[i] if len(layer_opts) == len(feats.layers) else layer_opts[-1]
        per_layer.append(score_metrics(dataclasses.replace(setup, metrics=layered), entry,
                                       dataclasses.replace(feats, features=layer, layers=None), opts, f"@layer{i}"))
    best: dict[str, int] = {}
    table: dict[str, list[float | None]] = {}
    for m in layered:
        table[m] = [run[0].get(m) for run in per_layer]
        finite = [(v, i) for i, v in enumerate(table[m]) if v is not None and math.isfinite(v)]
        if finite:
            value, best[m] = max(finite)  # on a tie, the deeper layer
            scores[m] = value
        else:
            scores[m] = None
            why = next((run[1][m] for run in reversed(per_layer) if m in run[1]), None)
            if why is not None:
                failures[m] = why
        spent = [run[2][m] for run in per_layer if m in run[2]]
        if spent:
            seconds[m] = float(sum(spent))
        recorded = [run[3].get(m) for run in per_layer]
        cold[m] = None if any(t is None for t in recorded) else float(sum(recorded))
    return scores, failures, seconds, cold, {"best_layer": best, "layer_scores": table}
