"""Transferability metrics: score pretrained models for a target without fine-tuning.

``list_metrics()``, ``score(metric, features, labels, source_probs=None, **options)``,
``consensus(table, n_models)`` and ``rank(dataset, zoo, metrics=None, ...) -> RankResult``.
"""

from ._api import rank
from ._consensus import consensus
from ._registry import METRICS
from ._result import ModelScores, RankResult
from ._score import list_metrics, metric_info, score

__all__ = ["METRICS", "ModelScores", "RankResult", "consensus", "list_metrics", "metric_info", "rank", "score"]
