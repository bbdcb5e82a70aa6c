"""transferlab: practical transfer learning with measured evidence.

Light at import time: capabilities load their heavy dependencies (torch, timm, transformers) only when used.

>>> import transferlab
>>> result = transferlab.rank("builtin:fashion-mnist", "builtin:vision", image_size=128)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .errors import TransferlabError

__all__ = ["__version__", "TransferlabError", "rank", "load_dataset", "list_metrics", "score"]


def rank(*args: Any, **kwargs: Any) -> Any:
    """See :func:`transferlab.rank.rank`."""
    from .rank import rank as _rank

    return _rank(*args, **kwargs)


def load_dataset(*args: Any, **kwargs: Any) -> Any:
    """See :func:`transferlab.data.load_dataset`."""
    from .data import load_dataset as _load

    return _load(*args, **kwargs)


def list_metrics(pattern: str | None = None) -> list[str]:
    """See :func:`transferlab.rank.list_metrics`."""
    from .rank import list_metrics as _list

    return _list(pattern)


def score(*args: Any, **kwargs: Any) -> float:
    """See :func:`transferlab.rank.score`."""
    from .rank import score as _score

    return _score(*args, **kwargs)
