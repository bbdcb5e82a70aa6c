"""Shared HTML helpers: page shell, tables, embedded matplotlib figures."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}th,td{padding:.3rem .6rem;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td.l,th.l{text-align:left}.muted{color:#777}.note{background:#fff8e1;
border-left:4px solid #f0b400;padding:.5rem .8rem;margin:.4rem 0}.ok{background:#e8f5e9;border-left-color:#43a047}
img{max-width:100%}code{background:#f3f3f3;padding:0 .25rem}
"""


def esc(x: Any) -> str:
    return html.escape(str(x))


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def figure_png(fig: Any, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    th = "".join(f"<th class='{'l' if i < left else ''}'>{esc(h)}</th>" for i, h in enumerate(headers))
    trs = "".join(
        "<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "<span class='muted'>n/a</span>"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return esc(v)
