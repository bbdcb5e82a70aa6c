"""One declaration of a result table, three renderers.

A result declares its tables once — a :class:`Table` of :class:`Column` s (key, label, format, alignment), its rows
(plain dicts of raw values), notes and verdicts — and :func:`render_html` (the reports), :func:`render_markdown`
(``benchmarks/bench_*_tables.py``, pasted into docs/benchmarks.md) and :func:`render_console` (the CLI) render that
declaration. A table travels in a result's ``to_dict()`` as :meth:`Table.to_dict`, so bench JSON files carry it.

Formats (``Column.fmt``; ``digits`` overrides the default number of decimals):

========== ================================ =========================
fmt        a value of 0.8123 (or 12345)     default digits
========== ================================ =========================
text       as given                         —
number     ``0.812``                        3
signed     ``+0.812``                       3
points     ``+81.2`` (a share, in points)   1
percent    ``81.2 %``                       1
mean_sd    ``0.812 ± 0.013`` (``sd`` key)   3
signed_sd  ``+0.812 ± 0.013`` (``sd`` key)  3
seconds    ``0.8``                          1
count      ``12,345``                       —
ratio      ``0.81×``                        2
========== ================================ =========================

``None`` is shown as ``n/a``; a missing key or ``""`` as an empty cell."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

NA = "n/a"
FORMATS = ("text", "number", "signed", "points", "percent", "mean_sd", "signed_sd", "seconds", "count", "ratio")
_DIGITS = {"number": 3, "signed": 3, "points": 1, "percent": 1, "mean_sd": 3, "signed_sd": 3, "seconds": 1,
           "ratio": 2}


def pm(mean: float | None, sd: float | None = None, digits: int = 3, signed: bool = False) -> str:
    """The one "mean ± sd" formatter: ``0.812 ± 0.013``; ``n/a`` without a mean; the mean alone without an sd."""
    if mean is None:
        return NA
    sign = "+" if signed else ""
    return f"{mean:{sign}.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def fmt_value(v: Any, fmt: str = "number", digits: int | None = None, sd: float | None = None) -> str:
    """One value in one of :data:`FORMATS` (plain text: no markup)."""
    if v is None:
        return NA
    if isinstance(v, str) or fmt == "text":
        return str(v)
    d = _DIGITS.get(fmt, 0) if digits is None else digits
    if fmt in ("mean_sd", "signed_sd"):
        return pm(v, sd, d, signed=fmt == "signed_sd")
    out = {"number": lambda: f"{v:.{d}f}", "signed": lambda: f"{v:+.{d}f}", "points": lambda: f"{100 * v:+.{d}f}",
           "percent": lambda: f"{100 * v:.{d}f} %", "seconds": lambda: f"{v:.{d}f}",
           "count": lambda: f"{round(v):,}", "ratio": lambda: f"{v:.{d}f}×"}.get(fmt)
    if out is None:
        raise ValueError(f"unknown table format {fmt!r}; known: {', '.join(FORMATS)}")
    return out()


def interval(ci: Any, digits: int = 2) -> str:
    """A bootstrap interval as ``[0.12, 0.80]`` ("" without one)."""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else ""


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its header, its format (:data:`FORMATS`), decimals, alignment ("left" or
    "right"; default: text left, numbers right), the key of the sd (``mean_sd``), the key of a secondary text shown
    with the value (``detail``: an interval, a mark; muted below it in HTML) and whether it is emphasised."""

    key: str
    label: str
    fmt: str = "text"
    digits: int | None = None
    align: str = ""
    sd: str | None = None
    detail: str | None = None
    strong: bool = False

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown table format {self.fmt!r}; known: {', '.join(FORMATS)}")

    @property
    def left(self) -> bool:
        return self.align == "left" if self.align else self.fmt == "text"

    def text(self, row: dict[str, Any]) -> str:
        """The cell of ``row`` as plain text (value only, no detail)."""
        if self.key not in row or row[self.key] == "":
            return ""
        return fmt_value(row[self.key], self.fmt, self.digits, row.get(self.sd) if self.sd else None)

    def detail_text(self, row: dict[str, Any]) -> str:
        return str(row.get(self.detail) or "") if self.detail else ""


@dataclass
class Table:
    """A declared result table: ``title``, ``columns``, ``rows`` (dicts of raw values), ``notes`` (what the numbers
    are), ``verdicts`` (what they say: computed on the result), ``name`` (to find it among a result's tables)."""

    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "columns": [asdict(c) for c in self.columns],
                "rows": self.rows, "notes": list(self.notes), "verdicts": list(self.verdicts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Table:
        known = {f.name for f in fields(Column)}
        cols = [Column(**{k: v for k, v in c.items() if k in known}) for c in d["columns"]]
        return cls(d.get("title", ""), cols, list(d.get("rows") or []), list(d.get("notes") or []),
                   list(d.get("verdicts") or []), d.get("name", ""))

    def cells(self) -> list[list[tuple[str, str]]]:
        """Every row as (value, detail) text pairs, one per column."""
        return [[(c.text(r), c.detail_text(r)) for c in self.columns] for r in self.rows]


def tables_of(result: dict[str, Any], name: str | None = None) -> list[Table]:
    """The tables a result's ``to_dict()`` carries (those called ``name``, or whose name starts with ``name:``)."""
    out = [Table.from_dict(t) for t in result.get("tables") or []]
    return out if name is None else [t for t in out if t.name == name or t.name.startswith(name + ":")]


# -- HTML (the reports: report/_html.py's CSS) --------------------------------------------------------------------


def _html_cell(c: Column, value: str, detail: str) -> str:
    out = "<span class='muted'>n/a</span>" if value == NA else html.escape(value)
    if c.strong and value and value != NA:
        out = f"<b>{out}</b>"
    return out + (f"<br><span class='muted'>{html.escape(detail)}</span>" if detail else "")


def render_html(t: Table, heading: bool = True) -> str:
    """``<h2>`` title (unless not ``heading``), the verdicts in bold, the table, the notes muted."""
    cls = ["l" if c.left else "" for c in t.columns]
    th = "".join(f"<th class='{k}'>{html.escape(c.label)}</th>" for c, k in zip(t.columns, cls, strict=True))
    trs = "".join("<tr>" + "".join(f"<td class='{k}'>{_html_cell(c, v, d)}</td>"
                                   for c, k, (v, d) in zip(t.columns, cls, row, strict=True)) + "</tr>"
                  for row in t.cells())
    return ((f"<h2>{html.escape(t.title)}</h2>" if heading and t.title else "")
            + "".join(f"<p><b>{html.escape(v)}</b></p>" for v in t.verdicts)
            + f"<div class='scroll'><table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>"
            + "".join(f"<p class='muted'>{html.escape(n)}</p>" for n in t.notes))


# -- Markdown (docs/benchmarks.md) ----------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(t: Table, title: bool = True) -> str:
    """``**title**``, a pipe table with an alignment row (``:---`` left, ``---:`` right), the verdicts in bold and
    the notes, each a paragraph."""
    out = [f"**{_md(t.title)}**", ""] if title and t.title else []
    out.append("| " + " | ".join(_md(c.label) for c in t.columns) + " |")
    out.append("|" + "|".join(":---" if c.left else "---:" for c in t.columns) + "|")
    for row in t.cells():
        cells = []
        for c, (v, d) in zip(t.columns, row, strict=True):
            s = f"**{v}**" if c.strong and v and v != NA else v
            cells.append(_md(s + (f" {d}" if d else "")))
        out.append("| " + " | ".join(cells) + " |")
    for v in t.verdicts:
        out += ["", f"**{_md(v)}**"]
    for n in t.notes:
        out += ["", n]
    return "\n".join(out) + "\n"


def render_markdown_all(tables: Iterable[Table]) -> str:
    return "\n".join(render_markdown(t) for t in tables)


# -- the console (rich) -------------------------------------------------------------------------------------------


def render_console(t: Table) -> Any:
    """A rich renderable: the table (title above it, left-aligned), then the verdicts (bold) and the notes (dim).
    Cell text is never read as rich markup (``kd[teacher]`` stays as written)."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    rt = RichTable(title=t.title or None, title_justify="left")
    for c in t.columns:
        rt.add_column(c.label, justify="left" if c.left else "right", style="bold" if c.strong else None)
    for row in t.cells():
        rt.add_row(*(Text(v + (f" {d}" if d else "")) for v, d in row))
    return Group(rt, *(Text(v, style="bold") for v in t.verdicts), *(Text(n, style="dim") for n in t.notes))


def registry_table(registry: Any, header: str, title: str, columns: Iterable[tuple[str, str]] = (
        ("summary", "summary"), ("paper", "paper"))) -> Table:
    """A registry's entries (``--list`` of every command): the name under ``header``, then each ``(meta key,
    label)`` of ``columns``; a boolean entry shows as ``yes`` or nothing. ``registry``: anything with ``list()`` and
    ``meta(name)``."""
    cols = list(columns)

    def cell(v: Any) -> str:
        return ("yes" if v else "") if isinstance(v, bool) else "" if v is None else str(v)

    rows = [{"name": n, **{k: cell(registry.meta(n).get(k)) for k, _ in cols}} for n in registry.list()]
    return Table(title, [Column("name", header), *(Column(k, label) for k, label in cols)], rows, name="registry")
