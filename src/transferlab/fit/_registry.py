"""The adaptation-method registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry


@dataclass
class Prepared:
    """What a method hands the training loop: the model to train (possibly a wrapper), the parameters to optimise,
    an optional loss term ``regularizer(model, x, logits) -> scalar tensor``, and learning-rate multipliers for some
    parameters (``id(param) -> scale``; e.g. a new head that must move faster than pretrained biases)."""

    model: Any
    params: list[Any]
    regularizer: Callable[[Any, Any, Any], Any] | None = None
    lr_scales: dict[int, float] = field(default_factory=dict)
    freeze_norm_stats: bool = False  # batch norms keep their pretrained running statistics while training


#: name -> prepare(model, **options) -> Prepared (the method freezes/changes the model in place).
#: Metadata: ``summary``, ``paper``, ``default_lr``, ``peft``.
METHODS: Registry[Callable[..., Prepared]] = Registry(
    "fit method", modules=tuple(f"transferlab.fit.{m}" for m in ("_methods", "_peft", "_adapters", "_sparse", "_scalearn")))
