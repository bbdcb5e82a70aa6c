"""One place to make rich consoles: real terminals keep their width; pipes and files get $COLUMNS when set, else 160
columns, not 80."""

from __future__ import annotations

from typing import Any


def console(stderr: bool = False) -> Any:
    import os

    from rich.console import Console

    c = Console(stderr=stderr)
    if c.is_terminal:
        return c
    cols = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, width=int(cols) if cols.isdigit() and int(cols) > 20 else 160)


def alias(new: str, old: str, value: object, old_value: object) -> object:
    """The value of option ``new``, or of its deprecated spelling ``old`` (hidden from the help, kept for one
    release: docs/cli.md), with a warning on stderr when the old one was used."""
    if old_value is None:
        return value
    console(stderr=True).print(f"[yellow]warning:[/] {old} is deprecated; use {new}", highlight=False)
    return old_value


def print_registry(registry: Any, header: str, title: str,
                   columns: tuple[str | tuple[str, str], ...] = ("summary", "paper")) -> None:
    """A registry's entries as one table: the ``--list`` of every command (fit, merge, domain, distill, continual,
    prune). ``columns``: metadata keys, or (key, label) pairs; declared by :func:`transferlab.report.registry_table`."""
    from ..report import registry_table, render_console

    cols = [(c, c) if isinstance(c, str) else c for c in columns]
    console().print(render_console(registry_table(registry, header, title, cols)))
