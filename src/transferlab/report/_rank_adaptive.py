"""HTML of an adaptive ranking's rounds (the ``rank --adaptive`` report's section) and of ``bench rank-adaptive``."""

from __future__ import annotations

from typing import Any

from ._html import esc, page, table
from ._table import render_html, tables_of


def adaptive_section(result: dict[str, Any]) -> str:
    """``rank --adaptive``: what each round did (its examples, the models in it, their P(below the leader), who was
    dropped), and the forward passes against a full ranking's; "" for a full ranking."""
    a = result.get("adaptive")
    if not a:
        return ""
    rows = []
    for r in a["rounds"]:
        p = r.get("p_below_leader") or {}
        taking = ", ".join(f"{esc(m)}{' (leader)' if m == r['leader'] else ''}"
                           + (f" <span class='muted'>{p[m]:.2f}</span>" if m in p else "") for m in r["models"])
        rows.append([r["round"], f"{r['examples']:,}", taking, esc(", ".join(r["dropped"]) or "none"),
                     f"{r['resamples']}" if r.get("resamples") else "—", f"{r['forward_passes']:,}"])
    share = a.get("forward_passes_share") or 0.0
    s = a.get("settings") or {}
    return ("<h2>Adaptive ranking</h2>"
            f"<p>Rounds over growing class-stratified subsets of the data; after each round a model was dropped when "
            f"its consensus was below the leader's in at least {s.get('confidence', 0.95):g} of the half-samples of "
            "the round's examples (the muted figure beside a model: that share). Dropped models are listed below the "
            "survivors, the latest dropped first, with the scores of the last round they took part in.</p>"
            f"<p><b>Forward passes: {a['forward_passes']:,}</b> of a full ranking's {a['forward_passes_full']:,} "
            f"({100 * share:.0f} %), examples run through each model, summed.</p>"
            + table(["round", "examples", "models (P below the leader)", "dropped", "half-samples",
                     "forward passes"], rows, left=3))


def rank_adaptive_bench_html(result: dict[str, Any]) -> str:
    """``bench rank-adaptive``: every (target, seed), then the goals."""
    r = result
    body = (f"<h1>transferlab bench rank-adaptive</h1><p class='muted'>zoo {esc(r['zoo'])} · targets "
            f"{esc(', '.join(r['targets']))} · seeds {esc(r['seeds'])} · confidence {r['confidence']:g}</p>")
    return page("transferlab bench rank-adaptive", body + "".join(render_html(t) for t in tables_of(r)))
