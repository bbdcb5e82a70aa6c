"""What every bench result shares, written once: ``to_dict()`` is the result's measured data (``_data()``) with its
declared tables (``tables_from``), ``tables()`` the declaration, ``save()`` the JSON and the HTML report written
together or not at all. A result class sets ``json_name``, ``report`` (the name of its renderer in
:mod:`transferlab.report`) and ``tables_from``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .._io import json_text, write_files_atomic
from ._tables import with_tables


class DeclaredResult:
    json_name: ClassVar[str]
    report: ClassVar[str]

    def _data(self) -> dict[str, Any]:  # pragma: no cover - each result's own
        raise NotImplementedError

    @staticmethod
    def tables_from(d: dict[str, Any]) -> list[Any]:  # pragma: no cover - each result's own declaration
        """The tables of a ``to_dict()`` (or of a bench JSON file written by an older version)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, the verdicts and the declared tables (:meth:`tables`)."""
        d = self._data()
        return with_tables(d, type(self).tables_from(d))

    def tables(self) -> list[Any]:
        """The declared tables: what the report, the Markdown of benchmarks/ and the console render."""
        return type(self).tables_from(self._data())

    def save(self, out_dir: str | Path, *, html: bool = True) -> dict[str, Path]:
        """``json_name`` and (by default) report.html, written together or not at all; non-finite numbers as null."""
        import importlib

        d = self.to_dict()
        files = {self.json_name: json_text(d) + "\n"}
        if html:
            files["report.html"] = getattr(importlib.import_module("transferlab.report"), self.report)(d)
        written = write_files_atomic(out_dir, files)
        return {"json": written[self.json_name], **({"html": written["report.html"]} if html else {})}
