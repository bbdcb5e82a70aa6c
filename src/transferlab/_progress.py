"""The one progress display: on a terminal, rich bars with a count, the elapsed time, an ETA and a free-text note per
bar; in a pipe, under CI or ``nohup``, plain lines on stderr, one per bar every ``$TRANSFERLAB_PROGRESS_SECONDS``
(default 15) and one when a bar completes, so long work is never silent.

``with progress(enabled) as bars:`` yields a :class:`Bars`; when ``enabled`` is false every call on it does nothing,
so callers never branch on whether a bar is shown."""

from __future__ import annotations

import contextlib
import os
import sys
import time
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


class PlainLines:
    """The subset of rich's ``Progress`` that :class:`Bars` uses, as plain lines: ``description: done/total (pct),
    elapsed, ETA, note`` for a bar every ``interval`` seconds while it moves, and once when it completes."""

    def __init__(self, interval: float, stream: Any = None) -> None:
        self.interval, self.stream = interval, stream
        self._tasks: dict[int, dict[str, Any]] = {}

    def add_task(self, description: str, total: int | None = None, note: str = "") -> int:
        now = time.monotonic()
        tid = len(self._tasks)
        self._tasks[tid] = {"description": description, "total": total, "done": 0, "note": note, "start": now,
                            "last": now, "finished": False}
        return tid

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, *, advance: float = 0, description: str | None = None, note: str | None = None,
               total: int | None = None) -> None:
        t = self._tasks[task]
        t["done"] += advance
        if description is not None:
            t["description"] = description
        if note is not None:
            t["note"] = note
        if total is not None:
            t["total"] = total
        now = time.monotonic()
        complete = t["total"] is not None and t["done"] >= t["total"]
        if complete and not t["finished"]:
            t["finished"] = True
            self._line(t, now)
        elif not complete and now - t["last"] >= self.interval:
            self._line(t, now)

    def _line(self, t: dict[str, Any], now: float) -> None:
        from rich.text import Text

        t["last"] = now
        elapsed = now - t["start"]
        done, total = t["done"], t["total"]
        parts = [f"{Text.from_markup(str(t['description'])).plain}: {done:g}" + (f"/{total:g}" if total else "")]
        if total:
            parts[0] += f" ({100 * done / total:.0f}%)"
        parts.append(f"{clock(elapsed)} elapsed")
        if total and 0 < done < total:
            parts.append(f"ETA {clock(elapsed * (total - done) / done)}")
        if t["note"]:
            parts.append(Text.from_markup(str(t["note"])).plain)
        print(", ".join(parts), file=self.stream or sys.stderr, flush=True)


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@contextlib.contextmanager
def progress(enabled: bool, transient: bool = False) -> Iterator[Bars]:
    if not enabled:
        yield Bars()
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield Bars(PlainLines(float(os.environ.get("TRANSFERLAB_PROGRESS_SECONDS", "15"))))
        return
    from rich.progress import Progress

    with Progress(*_columns(), console=console, transient=transient) as bar:
        yield Bars(bar)


def _columns() -> tuple[Any, ...]:
    """A bar's columns: description, bar, count, elapsed, ETA, note. On a narrow terminal (80 columns, the fit's
    epoch bar with its validation metrics) the bar and the note give way first and a clipped description or note ends
    in an ellipsis on its one line; the count, the elapsed time and the ETA keep their width (rich narrows the columns
    that may wrap first, and all columns evenly only when those are not enough)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    class Clipped(TextColumn):
        def render(self, task: Any) -> Any:
            text = super().render(task)
            text.no_wrap, text.overflow = True, "ellipsis"
            return text

    def kept() -> Column:
        return Column(no_wrap=True)

    def gives_way() -> Column:
        return Column(no_wrap=False)

    return (Clipped("{task.description}", table_column=gives_way()), BarColumn(table_column=gives_way()),
            MofNCompleteColumn(table_column=kept()), TimeElapsedColumn(table_column=kept()),
            TextColumn("ETA", table_column=kept()), TimeRemainingColumn(table_column=kept()),
            Clipped("{task.fields[note]}", table_column=gives_way()))
