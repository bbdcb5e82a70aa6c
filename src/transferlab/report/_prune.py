"""HTML reports of ``prune`` (what was pruned, every class's score) and of ``bench prune`` (target accuracy and
pretraining time per pruned source, and the check)."""

from __future__ import annotations

from typing import Any

from ._html import esc, fmt, page
from ._table import render_html, tables_of


def prune_bench_html(result: dict[str, Any]) -> str:
    """``bench prune``: one declared table per target, then the checks."""
    r = result
    o = r.get("options", {})
    body = (f"<h1>transferlab bench prune</h1><p class='muted'>source {esc(r['source'])} · architecture "
            f"{esc(r['arch'])} · keep {r['keep']:g} of the classes · seeds {esc(r['seeds'])} · pretraining "
            f"{o.get('pretrain_epochs')} epochs (one thread) · fine-tuning {o.get('epochs')} epochs</p>")
    return page("transferlab bench prune", body + "".join(render_html(t) for t in tables_of(r)))


def prune_report_html(result: dict[str, Any]) -> str:
    """``prune`` (its result's ``to_dict()``): what was pruned (classes and training examples before and after), what
    was not measured and where it is, every source class by score, kept or not."""
    r = result
    sur = f" · surrogate <code>{esc(r['surrogate'])}</code>" if r.get("surrogate") else ""
    secs = r.get("seconds")
    body = (f"<h1>transferlab prune</h1><p class='muted'>source <code>{esc(r.get('source'))}</code> · target "
            f"<code>{esc(r.get('target'))}</code> · method <code>{esc(r.get('method'))}</code>{sur} · keep "
            f"{esc(r.get('keep'))} of the classes · seed {esc(r.get('seed'))}"
            + (f" · scoring took {fmt(secs)} s" if secs is not None else "") + "</p>"
            + "".join(render_html(t) for t in tables_of(r))
            + (f"<p class='muted'>The pruned source is the dataset manifest <code>{esc(r['manifest'])}</code>: "
               "<code>load_dataset</code>, <code>transferlab fit</code>, <code>rank</code> and <code>zoo build</code> "
               "read its folder as a dataset.</p>" if r.get("manifest") else ""))
    return page(f"transferlab prune — {r.get('source')}", body)
