"""The registry of model structures: modules a method adds to a network (adapters, scaled source adapters), rebuilt
from a saved card before its state dict loads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._registry import Registry

#: kind -> rebuild(net, state, structure) -> net. A method that adds modules registers its kind here (one file + one
#: decorator) and writes ``{"kind": ..., ...options}`` as the card's ``structure``.
STRUCTURES: Registry[Callable[[Any, dict[str, Any], dict[str, Any]], Any]] = Registry(
    "model structure", modules=("transferlab.models._adapters", "transferlab.models._scaled",
                                "transferlab.models._bottleneck", "transferlab.models._projection",
                                "transferlab.models._ease",
                                "transferlab.models._prompter", "transferlab.models._petal",
                                "transferlab.models._sla", "transferlab.models._pair_encoder"))
