"""HTML report of ``continual``: the accuracy matrix as a heat-map, ACC / BWT / FWT / forgetting, and the training
loss of each task."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._html import esc, figure_png, fmt, page, pyplot, table
from ._table import render_html, tables_of


def _heatmap(m: dict[str, Any]) -> str:
    plt = pyplot()
    r = np.asarray(m["accuracy_matrix"], dtype=float)
    tasks = m["tasks"]
    rows = ["every task (joint)"] if len(r) == 1 and len(tasks) > 1 else [f"after {t}" for t in tasks]
    fig, ax = plt.subplots(figsize=(0.9 * len(tasks) + 2.8, 0.45 * len(rows) + 1.6))
    ax.imshow(r, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(tasks)), [f"on {t}" for t in tasks], rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if r[i, j] > 0.6 else "white")
    return figure_png(fig, "accuracy matrix: rows = after training a task, columns = the task tested")


def _losses(m: dict[str, Any]) -> str:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    x0 = 0
    for k, h in enumerate(m.get("history") or []):
        xs = [x0 + row["epoch"] for row in h]
        ax.plot(xs, [row.get("train_loss") for row in h], "o-", ms=3,
                label=m["tasks"][k] if len(m["history"]) > 1 else "every task")
        x0 = xs[-1] if xs else x0
    ax.set_xlabel("epoch (over the stream)")
    ax.set_ylabel("training loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    return figure_png(fig, "training loss per task")


def continual_report_html(metrics: dict[str, Any]) -> str:
    m = metrics
    head = (f"<h1>transferlab continual: {esc(m['strategy'])} on {esc(m['model'])}</h1>"
            f"<p class='muted'>{esc(m['stream'])} · {m['epochs']} epochs per task · {m['train_seconds']:.0f} s · "
            f"peak memory {m['peak_rss_mb']:.0f} MB · {m['extra_params_per_task']} extra parameters per task</p>")
    summ = table(["ACC", "BWT", "FWT", "mean forgetting"],
                 [[fmt(m.get("acc")), fmt(m.get("bwt")), fmt(m.get("fwt")), fmt(m.get("mean_forgetting"))]], left=0)
    note = ("<p class='muted'>GEM's definitions: ACC is the mean of the last row; BWT the mean over earlier tasks of "
            "(final accuracy − accuracy just after training it): negative means forgetting; FWT the mean over tasks "
            "from the second of (accuracy before training it − accuracy of the untrained model), task-incremental "
            "streams only; forgetting of a task: its best earlier accuracy − its final accuracy.</p>")
    return page(f"transferlab continual — {m['strategy']}", head + summ + note + "<h2>Accuracy matrix</h2>"
                + _heatmap(m) + "<h2>Training</h2>" + _losses(m))


def continual_bench_html(result: dict[str, Any]) -> str:
    """``bench continual``: one declared table per stream."""
    r = result
    o = r.get("options", {})
    body = (f"<h1>transferlab bench continual</h1><p class='muted'>model {esc(r['model'])} · seeds {esc(r['seeds'])} "
            f"· {o.get('epochs')} epochs per task · image size {esc(o.get('image_size'))} · train sample "
            f"{esc(o.get('limit'))}, test sample {esc(o.get('test_limit'))} per task</p>")
    return page("transferlab bench continual", body + "".join(render_html(t) for t in tables_of(r)))
