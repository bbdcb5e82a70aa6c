"""One :func:`~transferlab.merge.merge_models` call's settings, its method's options checked: what its steps (the
output, the card, the recipe) share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MergeSettings:
    """The merge's inputs and options as :func:`~transferlab.merge.merge_models` was given them."""

    method: str
    base: Any
    models: Sequence[Any]
    out: Path
    options: dict[str, Any]
    data: Sequence[Any] | None = None
    names: Sequence[str] | None = None
    head_prefix: str | None = None
    trust_pickle: bool = False
    progress: bool = False
    reset_norms: bool = False
    reset_examples: int = 256
