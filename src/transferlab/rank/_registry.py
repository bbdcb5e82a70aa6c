"""The metric registry: one decorator per metric module."""

from __future__ import annotations

from collections.abc import Callable

from .._registry import Registry

#: name -> function(features, labels, source_probs=None, **options) -> float.
#: Metadata: ``needs`` ("features" or "source_probs"), ``higher_is_better``, ``paper``, ``reference``, ``summary``.
_MODULES = ("etran", "gbc", "hscore", "knn", "leep", "logme", "nce", "nleep", "ped", "sfda", "tmi", "transrate")
METRICS: Registry[Callable[..., float]] = Registry("metric", modules=tuple(f"transferlab.rank.{m}" for m in _MODULES))
