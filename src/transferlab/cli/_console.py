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
