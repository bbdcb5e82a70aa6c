"""Every user-facing failure in transferlab is a :class:`TransferlabError`.

Each message says what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "TransferlabError",
    "DataError",
    "ModelError",
    "MetricError",
    "CacheError",
    "RegistryError",
    "OutputError",
    "few",
]


class TransferlabError(Exception):
    """Base class: a problem the user can fix (bad input, missing package, unwritable directory)."""


class RegistryError(TransferlabError, KeyError):
    """Unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class DataError(TransferlabError):
    """A dataset cannot be loaded or is unsuitable for the requested job."""


class ModelError(TransferlabError):
    """A model reference cannot be resolved or loaded."""


class MetricError(TransferlabError):
    """A metric cannot be computed on the given inputs."""


class CacheError(TransferlabError):
    """The feature cache cannot be read or written."""


class OutputError(TransferlabError):
    """An output location cannot be written: a file where a directory is needed, no permission, no space, or one
    of the command's own inputs."""


def few(items: object, limit: int = 5) -> str:
    """At most ``limit`` items and a count of the rest, for messages: an error about 10,000 classes stays one line."""
    seq = [str(x) for x in items]  # type: ignore[attr-defined]
    head = ", ".join(seq[:limit])
    return head + (f", ... ({len(seq)} in all)" if len(seq) > limit else "")
