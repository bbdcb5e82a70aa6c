"""HTML report of a ranking: table, consensus bar chart, metric x model heat-map, timings."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ._html import esc, figure_png, fmt, page, pyplot, table
from ._rank_adaptive import adaptive_section


def _consensus_chart(result: Any) -> str:
    plt = pyplot()
    models = result.models
    names = [m.name for m in models][::-1]
    vals = [(m.consensus_score if m.consensus_score is not None else 0.0) for m in models][::-1]
    colors = ["#9e9e9e" if m.metadata.get("baseline") else "#1e88e5" for m in models][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(models) + 1.2))
    ax.barh(names, vals, color=colors)
    ax.set_xlim(0, 1)
    ax.set_xlabel("consensus (1 = first on every metric, 0 = last); grey = baseline")
    for i, v in enumerate(vals):
        ax.text(min(v + 0.01, 0.93), i, f"{v:.2f}", va="center", fontsize=8)
    return figure_png(fig, "consensus ranking")


def _heatmap(result: Any) -> str:
    plt = pyplot()
    models, metrics = result.models, result.metrics
    pos = np.full((len(models), len(metrics)), np.nan)
    for i, m in enumerate(models):
        for j, k in enumerate(metrics):
            r = m.ranks.get(k)
            n = sum(mm.ranks.get(k) is not None for mm in models)
            if r is not None:
                pos[i, j] = 1.0 if n <= 1 else 1.0 - (r - 1) / (n - 1)
    # 0.62 in per metric at 110 dpi: 14 metrics make a 1,230 px image shown at its own size (8 pt cell text stays
    # 12 px; on a phone the image scrolls in its box instead of shrinking to unreadable)
    fig, ax = plt.subplots(figsize=(0.62 * len(metrics) + 2.6, 0.42 * len(models) + 1.6))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")
    ax.imshow(np.ma.masked_invalid(pos), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(metrics)), metrics, rotation=35, ha="right")
    ax.set_yticks(range(len(models)), [m.name for m in models])
    for i, m in enumerate(models):
        for j, k in enumerate(metrics):
            v = m.scores.get(k)
            txt = "failed" if k in m.failures else "n/a" if v is None else _short(v)
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="#555555" if np.isnan(pos[i, j]) else "white" if pos[i, j] < 0.6 else "black")
    ax.set_title("score per metric (colour: rank within the metric, yellow = best)", fontsize=9)
    return figure_png(fig, "metric by model heat-map", wide=True)


def _short(v: float) -> str:
    """A score in at most 5 characters or so: 3 significant digits, whole numbers from 1,000 up (3039, not 3.04e+03)."""
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _timings_chart(result: Any) -> str:
    plt = pyplot()
    models = result.models
    names = [m.name for m in models][::-1]
    fwd = [m.timings.get("forward_seconds", 0.0) for m in models][::-1]
    io_ = [max(0.0, m.timings.get("extract_seconds", 0.0) - m.timings.get("forward_seconds", 0.0))
           for m in models][::-1]
    met = [sum(m.timings.get("metrics", {}).values()) for m in models][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(models) + 1.2))
    ax.barh(names, fwd, label="forward passes", color="#43a047")
    ax.barh(names, io_, left=fwd, label="cache / data I/O", color="#fdd835")
    ax.barh(names, met, left=np.add(fwd, io_), label="metrics", color="#e53935")
    ax.set_xlabel("seconds")
    ax.legend(fontsize=8, loc="lower right")
    return figure_png(fig, "timings")


def _ensemble_section(result: Any) -> str:
    e = getattr(result, "ensemble", None)
    if not e:
        return ""
    names = dict(zip(e["models"], e["names"], strict=True))
    rows = [[i + 1, f"{esc(names[m])}<br><span class='muted'>{esc(m)}</span>", fmt(e["quality"][m], 3),
             fmt(e["gains"][i], 3),
             fmt(max((e["similarity"][m][o] for o in e["models"][:i]), default=None), 3)]
            for i, m in enumerate(e["models"])]
    return ("<h2>Ensemble</h2><p>Chosen greedily to maximise log det(I + θ·diag(q)·CKA·diag(q)) over the set "
            f"(θ = {e['theta']:g}): q is each model's quality (1 − its consensus position), CKA the similarity of two "
            "models' target features. The determinant rewards members that are each good and represent the target "
            "differently.</p>"
            + table(["pick", "model", "quality q", "objective gain", "max CKA to earlier picks"], rows, left=2))


def _view(result: dict[str, Any]) -> Any:
    """Attribute access over a ranking's ``to_dict()`` (the result and each model; inner mappings stay dicts)."""
    from types import SimpleNamespace

    return SimpleNamespace(**{**result, "models": [SimpleNamespace(**{"failures": {}, **m})
                                                   for m in result["models"]]})


def _score_cell(m: Any, k: str) -> str:
    if k in m.failures:
        return f"<span title='{esc(m.failures[k])}'>failed</span>"
    rank = m.ranks.get(k)
    return fmt(m.scores.get(k)) + (f" <span class='muted'>({rank})</span>" if rank is not None else "")


def _model_cell(m: Any) -> str:
    base = " <span class='muted'>(baseline)</span>" if m.metadata.get("baseline") else ""
    return f"{esc(m.name)}{base}<br><span class='muted'>{esc(m.model)}</span>"


def _tables(result: Any) -> str:
    """The compact table (consensus and the preferred metrics) and, folded, the table of every metric."""
    compact = list(getattr(result, "preferred_metrics", None) or result.metrics)[:4]
    rows = [[m.consensus_rank, _model_cell(m), fmt(m.consensus_score, 3), *(_score_cell(m, k) for k in compact),
             fmt(m.metadata.get("params"))] for m in result.models]
    out = table(["#", "model", "consensus", *compact, "params"], rows, left=2)
    if len(compact) < len(result.metrics):
        full = [[m.consensus_rank, _model_cell(m), fmt(m.consensus_score, 3),
                 *(_score_cell(m, k) for k in result.metrics), fmt(m.metadata.get("params")),
                 fmt(m.metadata.get("feature_dim"))] for m in result.models]
        out += (f"<details><summary>Every metric ({len(result.metrics)}), with each model's rank within it"
                "</summary>" + table(["#", "model", "consensus", *result.metrics, "params", "dim"], full, left=2)
                + "</details>")
    return out


def _recommendation(result: Any) -> str:
    best = result.models[0]
    why = getattr(result, "recommendation_why", None) or f"first by consensus over {len(result.metrics)} metrics"
    out = f"<p><b>Recommended starting point: {esc(best.name)}</b> (<code>{esc(best.model)}</code>): {esc(why)}.</p>"
    e = getattr(result, "expected_accuracy", None)
    if e:
        out += (f"<p>Expected accuracy: a linear probe on its frozen features reaches <b>{e['accuracy']:.3f}</b> in "
                f"cross-validation (95 % interval {e['low']:.3f}–{e['high']:.3f} over {e['n']:,} examples); "
                "fine-tuning usually reaches at least as much.</p>")
    return out


_WARM = ("warm", "partly warm")


def _timings_table(result: Any) -> str:
    """This run's timings; on a warm run (features from the cache) beside the cold run's, as recorded when the
    features and scores were computed, under a note that says which is which."""
    t = result.timings
    c = getattr(result, "cache", None) or {}
    if c.get("state") not in _WARM:
        return table(["step", "seconds"], [[esc(k.replace("_", " ")), fmt(float(v))] for k, v in t.items()])
    cold = c.get("cold") or {}
    rows = [["total", fmt(t.get("total_seconds")), fmt(cold.get("seconds"))],
            ["feature extraction", fmt(t.get("extraction_seconds")), fmt(cold.get("extraction_seconds"))],
            ["forward passes", fmt(t.get("forward_seconds")), fmt(cold.get("forward_seconds"))],
            ["metrics", fmt(t.get("metrics_seconds")), fmt(cold.get("metrics_seconds"))]]
    return (f"<div class='note'>{esc(getattr(result, 'timing_summary', None) or '')}</div>"
            + table(["step", f"this run ({c['state']}), s", "cold, as recorded, s"], rows)
            + "<p class='muted'>Cold total: feature extraction and metrics, summed over the models (model loading "
              "is not recorded).</p>")


def rank_report_html(result: dict[str, Any]) -> str:
    """``rank`` (its result's ``to_dict()``): the recommendation, the ranking table, charts and timings."""
    raw, result = result, _view(result)
    ds = result.dataset
    state = (getattr(result, "cache", None) or {}).get("state")
    warm = f" · <b>{esc(state)}</b>: features from the cache (timings below)" if state in _WARM else ""
    head = (f"<h1>transferlab rank: {esc(ds.get('name'))}</h1><p class='muted'>zoo <code>{esc(result.zoo)}</code> · "
            f"{ds.get('size')} examples, {ds.get('num_classes')} classes ({esc(ds.get('split'))} split"
            f"{', stratified sample' if ds.get('limit') else ''}) · image size "
            f"{esc(result.options.get('image_size') or 'native')} · fingerprint <code>{esc(ds.get('fingerprint', '')[:12])}"
            f"</code> · {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}{warm}</p>")
    notes = "".join(
        f"<div class='note{' ok' if n.startswith('Every pretrained') else ''}'>{esc(n)}</div>" for n in result.notes)
    hits = [m.name for m in result.models if m.timings.get("cache_hit")]
    cache_note = (f"<p class='muted'>Features from the cache (no forward pass) for: {esc(', '.join(hits))}.</p>"
                  if hits else "")
    body = (head + _recommendation(result) + notes
            + "<h2>Ranking</h2>" + _tables(result)
            + "<p class='muted'>Scores: higher is better for every metric; (rank within the metric). n/a: the metric "
              "does not apply (LEEP and NCE need a source classifier head); failed: the metric could not be computed on "
              "this model's features (the notes say why). Consensus: 1 − mean normalised rank (higher is better). "
              "Baselines (grey in the charts) are not pretrained: a model below them does not help.</p>"
            + adaptive_section(raw) + _ensemble_section(result)
            + "<h2>Consensus</h2>" + _consensus_chart(result)
            + "<h2>Metric × model</h2>" + _heatmap(result)
            + "<h2>Timings</h2>" + _timings_table(result) + cache_note + _timings_chart(result))
    return page(f"transferlab rank — {ds.get('name')}", body)
