"""The ``transferlab`` command line: one typer app, one module per command, heavy imports deferred."""

from ._app import app, main

__all__ = ["app", "main"]
