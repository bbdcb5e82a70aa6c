"""HTML report of ``bench merge``: the declared table (every merged network on every task, beside the published
ViT-B/32 ordering) and a chart of the accuracies."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ._html import esc, figure_png, page, pyplot
from ._table import fmt_value, render_html, tables_of


def _merge_chart(result: dict[str, Any]) -> str:
    """Accuracy per task (a marker per task) and its mean (the bar) for every method."""
    plt = pyplot()
    tasks = list(result["tasks"])
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    ax.bar(x, [r["mean"] if r["mean"] is not None else 0.0 for r in rows], color="#cfd8dc", label="mean", width=0.7)
    markers = "os^Dv<>pP*"
    for k, t in enumerate(tasks):
        ax.scatter(x, [r["accuracy"].get(t) if r["accuracy"].get(t) is not None else np.nan for r in rows],
                   marker=markers[k % len(markers)], s=28, zorder=3, label=t)
    ax.set_xticks(x, [r["method"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (the task's own head)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("accuracy per task and method (bar: mean over tasks)", fontsize=9)
    return figure_png(fig, "accuracy per task per method", wide=True)


def merge_bench_html(result: dict[str, Any]) -> str:
    """``bench merge`` (its result's ``to_dict()``): accuracy of every merged network on every task, next to the
    published ViT-B/32 ordering (the declared table), and a chart of it."""
    names = list(result["tasks"])
    o = result["options"]
    body = (f"<h1>transferlab bench merge</h1><p class='muted'>base <code>{esc(result['model'])}</code> · "
            f"{len(names)} tasks ({esc(', '.join(result['targets']))}) · each fine-tuned with "
            f"<code>{esc(o.get('fit_method'))}</code> for {esc(o.get('epochs'))} epochs · "
            f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>"
            + "".join(render_html(t, heading=False) for t in tables_of(result))
            + (_merge_chart(result) if result["rows"] else ""))
    return page("transferlab bench merge", body)


def merge_report_html(result: dict[str, Any]) -> str:
    """``merge`` (its result's ``to_dict()``): what was merged and how, its warnings, and each head beside its own
    fit when the merge had data (else what to give for that check)."""
    r = result
    opts = ", ".join(f"{k}={v}" for k, v in (r.get("options") or {}).items()) or "defaults"
    heads = r.get("heads") or {}
    head_rows = "".join(f"<li><code>{esc(n)}</code>: {h.get('num_classes')} classes, from "
                        f"<code>{esc(h.get('source'))}</code></li>" for n, h in heads.items())
    body = (f"<h1>transferlab merge</h1><p class='muted'>method <code>{esc(r.get('method'))}</code> ({esc(opts)}) · "
            f"{len(r.get('tasks') or [])} models · {fmt_value(r.get('seconds'), 'seconds')} s · peak memory "
            f"{fmt_value(r.get('peak_rss_mb'), 'count')} MB</p>"
            + "".join(f"<div class='note'>{esc(w)}</div>" for w in r.get("warnings") or [])
            + (f"<h2>Heads</h2><ul>{head_rows}</ul>" if head_rows else
               "<p>The models had no heads (Hugging Face folders or state dicts): one merged network.</p>")
            + ("".join(render_html(t) for t in tables_of(r)) or
               "<p class='muted'>Not checked on data: give one dataset per model (<code>--data</code>) to see each "
               "head of the merged model beside its own fit on held-out examples.</p>"))
    return page(f"transferlab merge — {r.get('method')}", body)
