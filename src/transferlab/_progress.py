"""The one progress display: rich bars with a count, the elapsed time and a free-text note per bar.

``with progress(enabled) as bars:`` yields a :class:`Bars`; when ``enabled`` is false every call on it does nothing,
so callers never branch on whether a bar is shown."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Bars:
    """Tasks on one live display (or nothing, when ``bar`` is None)."""

    def __init__(self, bar: Any = None) -> None:
        self._bar = bar

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def add(self, description: str, total: int | None, note: str = "") -> Any:
        return self._bar.add_task(description, total=total, note=note) if self._bar is not None else None

    def advance(self, task: Any, n: int = 1, note: str | None = None) -> None:
        if self._bar is not None:
            if note is None:
                self._bar.advance(task, n)
            else:
                self._bar.update(task, advance=n, note=note)

    def describe(self, task: Any, description: str) -> None:
        if self._bar is not None:
            self._bar.update(task, description=description)

    def note(self, task: Any, note: str) -> None:
        if self._bar is not None:
            self._bar.update(task, note=note)

    def iterate(self, items: Iterable[T], description: str, total: int | None = None,
                note: Any = None) -> Iterator[T]:
        """Yield ``items`` with a bar that advances after each; ``note(item)`` labels the item being worked on."""
        seq = list(items) if total is None and not hasattr(items, "__len__") else items
        task = self.add(description, total if total is not None else len(seq))  # type: ignore[arg-type]
        for item in seq:
            if note is not None:
                self.note(task, str(note(item)))
            yield item
            self.advance(task)


@contextlib.contextmanager
def progress(enabled: bool, transient: bool = False) -> Iterator[Bars]:
    if not enabled:
        yield Bars()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[note]}"), transient=transient) as bar:
        yield Bars(bar)
