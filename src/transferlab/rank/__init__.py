"""Transferability metrics: score pretrained models for a target without fine-tuning.

``list_metrics()``, ``score(metric, features, labels, source_probs=None, **options)``,
``consensus(table, n_models)``, ``rank(dataset, zoo, metrics=None, ...) -> RankResult`` and
``rank_adaptive(dataset, zoo, metrics=None, confidence=0.95, ...) -> RankResult`` (rounds over growing subsets).
"""

from ._adaptive_rank import adaptive_settings, rank_adaptive
from ._api import rank
from ._consensus import consensus
from ._registry import METRICS
from ._result import ModelScores, RankResult
from ._score import list_metrics, metric_info, score

__all__ = ["METRICS", "ModelScores", "RankResult", "adaptive_settings", "consensus", "list_metrics", "metric_info",
           "rank", "rank_adaptive", "score"]
