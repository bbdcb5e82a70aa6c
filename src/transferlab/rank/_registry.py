"""The metric registry: one decorator per metric module."""

from __future__ import annotations

from collections.abc import Callable

from .._registry import Registry, discover

#: name -> function(features, labels, source_probs=None, **options) -> float.
#: Metadata: ``needs`` ("features" or "source_probs"), ``higher_is_better``, ``paper``, ``reference``, ``summary``.
#: Every module of the package registers metrics except these (infrastructure): a new metric is one file.
INFRASTRUCTURE = ("_adaptive", "_adaptive_rank", "_api", "_consensus", "_ensemble", "_layers", "_model_run",
                  "_pairs", "_pipeline", "_registry", "_result", "_score", "_stats", "_validate")
METRICS: Registry[Callable[..., float]] = Registry("metric", modules=discover(__file__, __package__, INFRASTRUCTURE))
