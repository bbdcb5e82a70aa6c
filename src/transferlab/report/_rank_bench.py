"""HTML report of ``bench rank``: weighted tau per metric and target, baselines, cost, score-vs-accuracy scatters."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ._html import esc, figure_png, fmt, page, pyplot, short_names
from ._table import render_html, tables_of

#: marker shapes of the scatters; with tab10's colours each model of a zoo of up to 60 gets its own (colour, shape)
_MARKERS = "os^Dv<>pPX*h"


def _styles(n: int) -> list[tuple[str, str]]:
    """(colour, marker) of ``n`` models: distinct pairs (colour i mod 10, shape i mod 12), the same in every panel."""
    colours = [f"C{i}" for i in range(10)]
    return [(colours[i % 10], _MARKERS[i % len(_MARKERS)]) for i in range(n)]


def scatter_figure(result: dict[str, Any]) -> Any:
    """One panel per (metric, target): each model a point in its own colour and shape, named once in a legend
    under the panels (short names). No label beside a point: close points (models with similar scores and
    accuracies) made their labels overlap into an unreadable blot."""
    from matplotlib.lines import Line2D

    plt = pyplot()
    targets = list(result["targets"])
    metrics = list(result["scores"][targets[0]]) if targets else []
    refs = [m["ref"] for m in result["models"]]
    names = short_names([m["name"] for m in result["models"]])
    style = dict(zip(refs, _styles(len(refs)), strict=True))
    width = 3.0 * len(targets) + 0.5
    fig, axes = plt.subplots(len(metrics), len(targets), figsize=(width, 2.6 * len(metrics)), squeeze=False)
    for i, metric in enumerate(metrics):
        for j, t in enumerate(targets):
            ax = axes[i][j]
            gt = result["ground_truth"][t]
            for ref, s in result["scores"][t][metric].items():
                if s is not None and gt.get(ref) is not None and ref in style:
                    colour, marker = style[ref]
                    ax.scatter([s], [gt[ref]], s=24, color=colour, marker=marker, alpha=0.85, linewidths=0)
            wt = result["metrics"][metric]["weighted_tau"][t]
            ax.set_title(f"{metric} · {t.removeprefix('builtin:')} (τw {'n/a' if wt is None else f'{wt:.2f}'})",
                         fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_xlabel(f"{metric} score", fontsize=7)
            ax.set_ylabel("ground-truth accuracy", fontsize=7)
    fig.tight_layout()
    handles = [Line2D([], [], linestyle="", marker=style[r][1], color=style[r][0], markersize=5, label=n)
               for r, n in zip(refs, names, strict=True)]
    # columns as many as the figure's width holds at about 1.6 in per entry (a 20-character name at 7 pt + marker)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False,
               ncol=max(1, min(len(handles), int(width // 1.6))), handletextpad=0.3, columnspacing=1.0)
    return fig


def _scatters(result: dict[str, Any]) -> str:
    return figure_png(scatter_figure(result), "metric score against ground-truth accuracy", wide=True)


def degenerate_warnings(result: dict[str, Any]) -> list[str]:
    """Targets whose τ and intervals say little: too few models with a ground truth, intervals of zero width, or
    models tied at the best accuracy (which one is 'first' is then arbitrary)."""
    out = []
    for t in result["targets"]:
        acc = [a for a in result["ground_truth"][t].values() if a is not None]
        if len(acc) < 5:
            out.append(f"{t}: only {len(acc)} models have a ground truth; a weighted τ over so few models and its "
                       "bootstrap interval are not informative (add models or targets).")
            continue
        cis = [summ["weighted_tau_ci"].get(t) for summ in result["metrics"].values()]
        flat = sum(ci is None or ci[1] - ci[0] < 1e-9 for ci in cis)
        if cis and flat > len(cis) / 2:
            out.append(f"{t}: the bootstrap interval is degenerate (empty or of zero width) for {flat} of {len(cis)} "
                       "metrics: too few distinct models or tied accuracies.")
        top = max(acc)
        tied = sum(abs(a - top) < 1e-12 for a in acc)
        if tied > 1 and not result.get("checks"):  # benches with checks list every tie there
            out.append(f"{t}: {tied} models tie at the best accuracy ({top:.3f}): rel@1 and the order among them "
                       "are arbitrary; a harder target or a larger test split separates them.")
    return out


def _gt_intro(result: dict[str, Any]) -> str:
    o, p = result.get("options") or {}, result.get("protocol")
    if p == "linear_probe":
        return ("<p>Logistic regression on each model's frozen features of the training split, accuracy on the "
                "test split.</p>")
    grids = o.get("grid") or {}
    desc = "; ".join(f"{esc(k)}: " + " × ".join(f"{esc(n)} ∈ {{{', '.join(f'{v:g}' for v in vals)}}}"
                                                 for n, vals in g.items()) for k, g in grids.items())
    return (f"<p>Protocol <code>{esc(p)}</code>: per cell, every grid point ({desc}) trained for up to "
            f"{esc(o.get('epochs'))} epochs, stopped after {esc(o.get('patience'))} without a better validation "
            "accuracy (10 % of the training split); the point with the best validation accuracy gives the test "
            "accuracy" + (", and the protocol with the best validation accuracy is kept (linear probe included)"
                          if p == "best" else "") + ". Every grid point's result is in bench.json "
            "(<code>cells</code>).</p>")


def _cost(result: dict[str, Any]) -> str:
    """The ranking's time against the ground truth's. A warm ranking (features and scores from the cache) is said
    to be warm, beside the cold figure the cache recorded, which the ratio uses; without one, no ratio."""
    c = result["cost"]
    state = c.get("ranking_cache", "cold")  # an earlier bench.json: its ranking was timed as it ran
    cold, ratio = c.get("ranking_cold_seconds"), c.get("ground_truth_over_ranking")
    gt = (f"the ground truth ({esc(result['protocol'])}, one fit per cell) took {fmt(c['ground_truth_seconds'])} s"
          + (f", <b>{ratio:.1f}×</b> the cold ranking" if ratio else "")
          + f" ({c.get('ground_truth_cells_cached', 0)} cells from the cache: their stored time is counted).")
    if state == "cold":
        return (f"<p>Ranking every model on every target took {fmt(c['ranking_seconds'])} s (cold: every feature "
                "computed in this run" + (f"; extraction and metrics {fmt(cold)} s" if cold else "") + f"); {gt}</p>")
    when = c.get("ranking_cold_recorded_at")
    said = (f"Computed cold{' (from ' + esc(str(when)[:10]) + ')' if when else ''}, they took {fmt(cold)} s "
            "(extraction and metrics, summed over the models, as the cache recorded them): the ratio below uses "
            "that figure." if cold is not None else
            "The cold time was not recorded (features cached by an earlier transferlab version), so no ratio is "
            "given; clear the cache to measure it.")
    return (f"<div class='note'>This ranking was <b>{esc(state)}</b>: its features and scores came from the cache, so "
            f"its {fmt(c['ranking_seconds'])} s are cache reads, not what ranking costs. {said}</div>"
            + (f"<p>Cold, ranking every model on every target took {fmt(cold)} s; {gt}</p>" if cold is not None
               else f"<p>{gt[0].upper()}{gt[1:]}</p>"))


def bench_report_html(result: dict[str, Any]) -> str:
    """``bench rank`` (its result's ``to_dict()``): the verdict and the declared tables (weighted tau per metric and
    target with the baselines, the ensemble, the ground truth), the checks' warnings, the cost, scatters."""
    targets = list(result["targets"])
    head = (f"<h1>transferlab bench rank</h1><p class='muted'>zoo <code>{esc(result['zoo'])}</code> · "
            f"{len(result['models'])} models · targets {esc(', '.join(targets))} · ground truth: "
            f"<code>{esc(result['protocol'])}</code> · {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>")
    cost = _cost(result)
    checks = (result.get("checks") or {}).get("warnings") or []
    warns = "".join(f"<div class='note'>{esc(w)}</div>" for w in [*checks, *degenerate_warnings(result)])
    body = (head + warns + "".join(render_html(t) for name in ("tau", "priors", "prior_sources", "noise")
                                   for t in tables_of(result, name))
            + "".join(render_html(t) for t in tables_of(result, "ensemble"))
            + "<h2>Cost</h2>" + cost
            + "".join(f"<h2>{esc(t.title)}</h2>" + _gt_intro(result) + render_html(t, heading=False)
                      for t in tables_of(result, "ground_truth"))
            + "<h2>Score against accuracy</h2>" + _scatters(result))
    return page("transferlab bench rank", body)
