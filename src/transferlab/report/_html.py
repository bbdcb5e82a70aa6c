"""Shared HTML helpers: page shell, tables, embedded matplotlib figures."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1280px;color:#222;
line-height:1.45;padding:0 1rem}.scroll{overflow-x:auto;max-width:100%}.scroll img.wide{max-width:none}
details{margin:.5rem 0}summary{cursor:pointer;color:#1565c0}h1,p,.note{overflow-wrap:anywhere}
@media (max-width:700px){body{margin:1rem auto;padding:0 .5rem}table{font-size:.8rem}th,td{padding:.25rem .35rem}
.scroll img.fig{max-width:none}}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}th,td{padding:.3rem .6rem;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td.l,th.l{text-align:left}.muted{color:#777}.note{background:#fff8e1;
border-left:4px solid #f0b400;padding:.5rem .8rem;margin:.4rem 0}.ok{background:#e8f5e9;border-left-color:#43a047}
img{max-width:100%}code{background:#f3f3f3;padding:0 .25rem}
"""


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def esc(x: Any) -> str:
    return html.escape(str(x))


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


DPI = 110


def figure_png(fig: Any, alt: str, wide: bool = False) -> str:
    """``fig`` as an inline PNG. ``wide``: shown at its own size in a box that scrolls sideways on a narrow screen (a
    heat-map whose cell text must stay readable), instead of shrunk to the page's width."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cls = "wide" if wide else "fig"
    # every figure in a box that scrolls sideways: on a phone (390 px) a figure keeps its own size, so its text stays
    # legible, instead of shrinking to the screen's width (4-6 px text)
    return f"<div class='scroll'><img alt='{esc(alt)}' class='{cls}' src='data:image/png;base64,{data}'></div>"


def short_names(names: list[str], width: int = 20) -> list[str]:
    """Labels of at most ``width`` characters that stay distinct: a long name keeps its last word whole, where
    names that share a prefix differ ("ConvNeXt-S · textures" -> "ConvNeXt-S…textures"), so they are not cut to
    the same label; the full names when shortening would still make two equal."""
    import re

    def cut(n: str) -> str:
        if len(n) <= width:
            return n
        tail = re.split(r"[\s\-_·/:]+", n)[-1][-(width - 4):]
        return n[:width - 1 - len(tail)].rstrip(" -_·/:") + "…" + tail

    out = [cut(n) for n in names]
    return out if len(set(out)) == len(set(names)) else list(names)


def table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    th = "".join(f"<th class='{'l' if i < left else ''}'>{esc(h)}</th>" for i, h in enumerate(headers))
    trs = "".join(
        "<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<div class='scroll'><table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>"


def fmt(v: Any, digits: int = 4) -> str:
    """One number format for the reports: ``digits`` significant digits in fixed notation with thousands separators
    (62.3 s, 1,394.6 s, 0.8125), never ``6e+01``; scientific notation only below 0.001, where it is the honest form."""
    import math

    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "<span class='muted'>n/a</span>"
    if isinstance(v, float):
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 10 ** digits:
            return f"{v:,.0f}"
        if a >= 1e-3:
            text = f"{v:,.{max(0, digits - 1 - math.floor(math.log10(a)))}f}"
            return text.rstrip("0").rstrip(".") if "." in text else text
        return f"{v:.{digits}g}"
    return esc(v)
