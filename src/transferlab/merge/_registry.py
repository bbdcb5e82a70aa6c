"""The merge-method registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._registry import Registry, discover

#: name -> factory(**options) -> a merge method object (see ``_arith.Method``). Metadata: ``summary``, ``paper``,
#: ``reference`` (the implementation it was checked against), ``needs_data`` (fisher, regmean, atlas).
#: Every module of the package registers methods except these (infrastructure): a new method is one file.
INFRASTRUCTURE = ("_api", "_compat", "_health", "_hf_folder", "_job", "_mergekit", "_norms", "_pickle", "_recipe",
                  "_registry", "_settings", "_sources", "_stream", "_weighted")
MERGE_METHODS: Registry[Callable[..., Any]] = Registry(
    "merge method", modules=discover(__file__, __package__, INFRASTRUCTURE))
