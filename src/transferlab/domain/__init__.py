"""Domain adaptation: ``adapt(source, target, model, method)`` — a model for a shifted, unlabelled target from a
labelled source (``source_only``, ``dann``, ``cdan``, ``cdan_e``, ``mcc``) or, source-free, from a saved source model
alone (``shot``, ``nrc``, ``aad``: ``adapt(None, target, method=..., source_model=...)``), each an objective on the one
training loop, with label-free checkpoint selection (``transfer_score``, ``entropy``, ``im``, ``snd``, ``dev``, ``source_val``)."""

from ._api import DEFAULT_LR, DomainResult, adapt, list_methods, list_selectors
from ._methods import METHODS
from ._records import SOURCE_FREE_LR
from ._selectors import SELECTORS

__all__ = ["DEFAULT_LR", "METHODS", "SELECTORS", "SOURCE_FREE_LR", "DomainResult", "adapt", "list_methods", "list_selectors"]
