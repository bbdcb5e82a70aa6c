"""HTML report of ``bench prune``: target accuracy and pretraining time per pruned source, and the check."""

from __future__ import annotations

from typing import Any

from ._html import esc, page
from ._table import render_html, tables_of


def prune_bench_html(result: dict[str, Any]) -> str:
    """``bench prune``: one declared table per target, then the checks."""
    r = result
    o = r.get("options", {})
    body = (f"<h1>transferlab bench prune</h1><p class='muted'>source {esc(r['source'])} · architecture "
            f"{esc(r['arch'])} · keep {r['keep']:g} of the classes · seeds {esc(r['seeds'])} · pretraining "
            f"{o.get('pretrain_epochs')} epochs (one thread) · fine-tuning {o.get('epochs')} epochs</p>")
    return page("transferlab bench prune", body + "".join(render_html(t) for t in tables_of(r)))
