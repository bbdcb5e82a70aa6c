"""Source-dataset pruning for transfer (DP4TL): keep the source classes a target needs (``label_map``,
``feature_map``, ``random``), as a dataset manifest that ``load_dataset`` reads."""

from ._api import PruneResult, list_methods, prune
from ._methods import METHODS

__all__ = ["METHODS", "PruneResult", "list_methods", "prune"]
