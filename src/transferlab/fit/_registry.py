"""The adaptation-method registry."""

from __future__ import annotations

from collections.abc import Callable

from .._registry import Registry

#: name -> prepare(model, **options) -> list of trainable parameters (the method freezes/changes the model in place).
#: Metadata: ``summary``, ``paper``, ``modality``.
METHODS: Registry[Callable[..., list]] = Registry("fit method")
