"""HTML report of ``bench merge``: the declared table (every merged network on every task, beside the published
ViT-B/32 ordering) and a chart of the accuracies."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ._html import esc, figure_png, page, pyplot
from ._table import render_html, tables_of


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
