"""HTML report of ``domain``: the selected checkpoint, each selector's pick and regret, and every score per epoch
against the (marked) oracle target accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._html import esc, figure_png, fmt, page, pyplot, table
from ._table import render_html, tables_of

SELECTORS_SHOWN = ("guarded", "transfer_score", "entropy", "im", "snd", "dev", "source_val")


def _curves(history: list[dict[str, Any]]) -> str:
    """Each selector's score per epoch (z-scored, so they share an axis) and the oracle accuracy."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ep = [r["epoch"] for r in history]
    for s in SELECTORS_SHOWN:
        key = "val_accuracy" if s == "source_val" else s
        v = np.array([r.get(key, np.nan) for r in history], dtype=float)
        if np.isfinite(v).sum() >= 1:
            sd = np.nanstd(v)
            ax.plot(ep, (v - np.nanmean(v)) / (sd if sd > 0 else 1.0), "o-", ms=3, label=s)
    ax.set_xlabel("epoch")
    ax.set_ylabel("score (standardised)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    oracle = [r.get("oracle_accuracy") for r in history]
    if any(o is not None for o in oracle):
        ax2 = ax.twinx()
        ax2.plot(ep, [o if o is not None else np.nan for o in oracle], "k--", lw=2, label="oracle accuracy")
        ax2.set_ylabel("oracle target accuracy (not used)")
        ax2.legend(fontsize=7, loc="lower right")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    return figure_png(fig, "selector scores and oracle accuracy per epoch")


def domain_report_html(metrics: dict[str, Any]) -> str:
    m = metrics
    head = (f"<h1>transferlab domain: {esc(m['method'])} on {esc(m['model'])}</h1>"
            f"<p class='muted'>source {esc(m['source'])} ({m['n_source']} + {m['n_source_val']} held out) → target "
            f"{esc(m['target'])} ({m['n_target']} unlabelled) · trade-off {m['trade_off']:g} · image size "
            f"{esc(m['image_size'])} · {m['epochs']} epochs in {m['train_seconds']:.0f} s</p>")
    oracle = m.get("target_accuracy_oracle")
    summary = (f"<p><b>Kept: epoch {esc(m.get('selected_epoch'))}</b>, chosen by <code>{esc(m['select'])}</code> "
               "without target labels"
               + (f"; its target accuracy (oracle, from {m['n_target_test']} labelled target examples never used "
                  f"for training or selection): <b>{oracle:.4f}</b>, the best epoch's {m['oracle_best_epoch_accuracy']:.4f}"
                  if oracle is not None else "; the target has no labels here, so no oracle column") + ".</p>")
    rows = [[esc(s), p["epoch"], fmt(p.get("score")), fmt(p.get("oracle_accuracy")), fmt(p.get("regret"))]
            for s, p in m.get("picks", {}).items()]
    picks = table(["selector", "epoch it picks", "its score", "oracle accuracy", "regret (oracle)"], rows)
    head += "".join(f"<div class='note'>{esc(w)}</div>" for w in m.get("warnings") or [])
    return page(f"transferlab domain — {m['method']}", head + summary + "<h2>What each selector would pick</h2>" + picks
                + "<p class='muted'>Regret: the best epoch's oracle accuracy minus the picked epoch's. Oracle values "
                  "use target labels; they are shown to judge the selectors, never used by them.</p>"
                + "<h2>Scores per epoch</h2>" + _curves(m.get("history") or []))


def _score_scatter(result: dict[str, Any]) -> str:
    """Each selector's score against the oracle target accuracy over every checkpoint, per shift (seed 0)."""
    plt = pyplot()
    shifts = list(result["selectors"])
    names = sorted(result["selectors"][shifts[0]]) if shifts else []
    fig, axes = plt.subplots(len(shifts), len(names), figsize=(2.6 * len(names) + 0.5, 2.5 * len(shifts)),
                             squeeze=False)
    seed = (result.get("seeds") or [0])[0]
    for i, sh in enumerate(shifts):
        for j, s in enumerate(names):
            key = "val_accuracy" if s == "source_val" else s
            pts = [(row[key], row["oracle_accuracy"]) for r in result["runs"] if r["shift"] == sh and r["seed"] == seed
                   for row in r["history"] if row.get(key) is not None and row.get("oracle_accuracy") is not None]
            ax = axes[i][j]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.scatter(x, y, s=8, alpha=0.6)
            rho = result["selectors"][sh][s]["spearman"]
            ax.set_title(f"{s} · {sh} (ρ {'n/a' if rho is None else f'{rho:.2f}'})", fontsize=7)
            ax.set_xlabel(f"{s} score", fontsize=7)
            ax.set_ylabel("target accuracy (oracle)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    return figure_png(fig, "selector score against target accuracy", wide=True)


def domain_bench_html(result: dict[str, Any]) -> str:
    """``bench domain`` (its result's ``to_dict()``): per shift, the methods with the bound and every selector's pick
    (the declared tables), and each selector's score against the target accuracy."""
    o = result["options"]
    body = (f"<h1>transferlab bench domain</h1><p class='muted'>model <code>{esc(result['model'])}</code> · seeds "
            f"{esc(result['seeds'])} · trade-offs {esc(result['trade_offs'])} · {esc(o.get('epochs'))} epochs · "
            f"limit {esc(o.get('limit'))}</p>"
            + "".join(render_html(t) for t in tables_of(result))
            + "<h2>Score against target accuracy</h2>" + _score_scatter(result))
    return page("transferlab bench domain", body)
