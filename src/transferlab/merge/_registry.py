"""The merge-method registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._registry import Registry

#: name -> factory(**options) -> a merge method object (see ``_arith.Method``). Metadata: ``summary``, ``paper``,
#: ``reference`` (the implementation it was checked against), ``needs_data`` (fisher, regmean, atlas).
MERGE_METHODS: Registry[Callable[..., Any]] = Registry(
    "merge method", modules=tuple(f"transferlab.merge.{m}" for m in ("_arith", "_fisher", "_regmean", "_atlas")))
