"""HTML report of ``bench rank``: weighted tau per metric and target, baselines, cost, score-vs-accuracy scatters."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ._html import esc, figure_png, fmt, page, short_names, table


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _scatters(result: dict[str, Any]) -> str:
    plt = _plt()
    targets = list(result["targets"])
    metrics = list(result["scores"][targets[0]]) if targets else []
    refs = [m["ref"] for m in result["models"]]
    names = dict(zip(refs, short_names([m["name"] for m in result["models"]]), strict=True))
    fig, axes = plt.subplots(len(metrics), len(targets), figsize=(3.0 * len(targets) + 0.5, 2.6 * len(metrics)),
                             squeeze=False)
    for i, metric in enumerate(metrics):
        for j, t in enumerate(targets):
            ax = axes[i][j]
            gt = result["ground_truth"][t]
            pts = [(s, gt.get(ref), ref) for ref, s in result["scores"][t][metric].items()
                   if s is not None and gt.get(ref) is not None]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18)
                for s, a, ref in pts:
                    ax.annotate(names.get(ref, ref), (s, a), fontsize=6, alpha=0.7)
            wt = result["metrics"][metric]["weighted_tau"][t]
            ax.set_title(f"{metric} · {t.removeprefix('builtin:')} (τw {'n/a' if wt is None else f'{wt:.2f}'})",
                         fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_xlabel(f"{metric} score", fontsize=7)
            ax.set_ylabel("ground-truth accuracy", fontsize=7)
    fig.tight_layout()
    return figure_png(fig, "metric score against ground-truth accuracy", wide=True)


def _ensemble(result: dict[str, Any]) -> str:
    if not result.get("ensemble"):
        return ""
    names = {m["ref"]: m["name"] for m in result["models"]}
    rows = [[esc(t), esc(", ".join(names.get(m, m) for m in e["chosen"])), fmt(e["chosen_accuracy"], 4),
             fmt(e["top_k_consensus_accuracy"], 4), fmt(e["best_single_accuracy"], 4),
             fmt(e["random_mean_accuracy"], 4), fmt(e["random_max_accuracy"], 4)]
            for t, e in result["ensemble"].items()]
    return ("<h2>Ensemble selection</h2>"
            + table(["target", "chosen set", "its accuracy", "top-K consensus", "best single", "random mean",
                     "random max"],
                    rows, left=2)
            + "<p class='muted'>Test accuracy of a linear probe on the members' concatenated, standardised "
              "features.</p>")


def _tau_rows(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, summary) of every metric then every baseline, each by mean weighted tau, best first."""
    rows = [(kind, name, summ) for kind, block in (("metric", result["metrics"]), ("baseline", result["baselines"]))
            for name, summ in block.items()]
    mean = lambda s: s["weighted_tau"]["mean"] if s["weighted_tau"]["mean"] is not None else -np.inf  # noqa: E731
    return sorted(rows, key=lambda r: (r[0] != "metric", -mean(r[2])))


#: metrics that are cross-validated probes, not transferability estimates
PROBES = frozenset({"knn", "linear_probe"})


def trust(result: dict[str, Any]) -> str:
    """Which score to trust on this zoo: the metric with the highest mean weighted τ, unless a baseline (kNN, the
    parameter count, ...) does better, in which case the baseline."""
    rows = [r for r in _tau_rows(result) if r[2]["weighted_tau"]["mean"] is not None]
    # the cross-validated probes (kNN, linear probe) count as baselines: they are what a metric must beat
    base_names = set(result["baselines"]) | PROBES
    metrics = [r for r in rows if r[0] == "metric" and r[1] not in base_names]
    baselines = sorted((r for r in rows if r[1] in base_names), key=lambda r: -r[2]["weighted_tau"]["mean"])
    if not metrics:
        return "No metric has a weighted τ on this zoo (too few models with a ground truth)."
    _, name, summ = metrics[0]
    mean = summ["weighted_tau"]["mean"]
    per_target = [v for t, v in summ["weighted_tau"].items() if t != "mean" and v is not None]
    if baselines and baselines[0][2]["weighted_tau"]["mean"] >= mean:
        b, bm = baselines[0][1], baselines[0][2]["weighted_tau"]["mean"]
        return (f"No transferability metric beats the {b} baseline on this zoo (mean τw {bm:.2f}; the best metric, "
                f"{name}, {mean:.2f}): trust {b}.")
    ahead = (f", ahead of the best baseline, {baselines[0][1]} ({baselines[0][2]['weighted_tau']['mean']:.2f})"
             if baselines else "")
    return (f"Trust {name} on this zoo: the highest mean weighted τ, {mean:.2f} over {len(per_target)} target"
            f"{'s' if len(per_target) != 1 else ''} (lowest {min(per_target):.2f}){ahead}.")


def degenerate_warnings(result: dict[str, Any]) -> list[str]:
    """Targets whose τ and intervals say little: too few models with a ground truth, intervals of zero width, or
    models tied at the best accuracy (which one is 'first' is then arbitrary)."""
    out = []
    rows = _tau_rows(result)
    for t in result["targets"]:
        acc = [a for a in result["ground_truth"][t].values() if a is not None]
        if len(acc) < 5:
            out.append(f"{t}: only {len(acc)} models have a ground truth; a weighted τ over so few models and its "
                       "bootstrap interval are not informative (add models or targets).")
            continue
        cis = [r[2]["weighted_tau_ci"].get(t) for r in rows if r[0] == "metric"]
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


def _gt_cell(result: dict[str, Any], target: str, ref: str) -> str:
    """A ground-truth accuracy with its interval and what it rests on: the probe reference, the protocol chosen
    (``best``), the under-trained and fallback marks."""
    acc = result["ground_truth"][target].get(ref)
    cell = (result.get("cells") or {}).get(target, {}).get(ref)
    ci = ((result.get("checks") or {}).get("targets", {}).get(target, {}).get("intervals") or {}).get(ref)
    out = fmt(acc, 4) + (f" <span class='muted'>[{ci[0]:.3f}, {ci[1]:.3f}]</span>" if ci else "")
    if not cell:
        return out
    if cell.get("fallback"):
        return out + f" <span class='muted' title='{esc(cell['fallback'])}'>† probe</span>"
    if cell.get("chosen_protocol") and cell["chosen_protocol"] != "linear_probe":
        if result.get("protocol") == "best":
            out += f"<br><span class='muted'>{esc(cell['chosen_protocol'])}</span>"
        out += f"<br><span class='muted'>probe {cell['probe_accuracy']:.4f}</span>"
    if cell.get("under_trained"):
        out += " <b title='below the linear probe on its frozen features'>⚠ under-trained</b>"
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


def bench_report_html(result: dict[str, Any]) -> str:
    """``bench rank`` (its result's ``to_dict()``): weighted tau per metric and target, baselines, cost, scatters."""
    targets = list(result["targets"])
    head = (f"<h1>transferlab bench rank</h1><p class='muted'>zoo <code>{esc(result['zoo'])}</code> · "
            f"{len(result['models'])} models · targets {esc(', '.join(targets))} · ground truth: "
            f"<code>{esc(result['protocol'])}</code> · {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>")
    rows = []
    for kind, name, summ in _tau_rows(result):
        vals, mean = [summ["weighted_tau"][t] for t in targets], summ["weighted_tau"]["mean"]
        cis = [summ["weighted_tau_ci"][t] for t in targets]
        cells = [fmt(v, 3) + (f"<br><span class='muted'>[{ci[0]:.2f}, {ci[1]:.2f}]</span>" if ci else "")
                 for v, ci in zip(vals, cis, strict=True)]
        rel = [summ["rel_at_1"][t] for t in targets]
        rel_mean = float(np.mean([r for r in rel if r is not None])) if any(r is not None for r in rel) else None
        rows.append([esc(name) + (" <span class='muted'>(baseline)</span>" if kind == "baseline" else ""),
                     *cells, f"<b>{fmt(mean, 3)}</b>", fmt(rel_mean, 3)])
    gt_rows = [[esc(m["name"]), *(_gt_cell(result, t, m["ref"]) for t in targets)] for m in result["models"]]
    c = result["cost"]
    ratio = c.get("ground_truth_over_ranking")
    cost = (f"<p>Ranking every model on every target took {c['ranking_seconds']:.1f} s; the ground truth "
            f"({esc(result['protocol'])}, one fit per cell) took {c['ground_truth_seconds']:.1f} s"
            + (f", <b>{ratio:.1f}×</b> as long" if ratio else "")
            + f" ({c.get('ground_truth_cells_cached', 0)} cells from the cache: their stored time is counted).</p>")
    checks = (result.get("checks") or {}).get("warnings") or []
    warns = "".join(f"<div class='note'>{esc(w)}</div>" for w in [*checks, *degenerate_warnings(result)])
    body = (head + f"<p><b>{esc(trust(result))}</b></p>" + warns
            + "<h2>Weighted Kendall τ per target</h2>"
            + table(["score", *targets, "mean τw", "mean rel@1"], rows)
            + "<p class='muted'>τw: <code>scipy.stats.weightedtau(score, accuracy)</code> (top models weigh more); "
              "[95 % bootstrap interval over models]; rel@1: accuracy of the top-scored model / best accuracy. "
              "Baselines: random scores (mean of 1000 draws), parameter count, source accuracy, kNN.</p>"
            + _ensemble(result)
            + "<h2>Cost</h2>" + cost
            + "<h2>Ground truth (test accuracy)</h2>" + _gt_intro(result) + table(["model", *targets], gt_rows)
            + "<p class='muted'>[95 % bootstrap interval over test examples]; probe: the linear probe on the "
              "model's frozen features, trained on the same examples (a trained cell below it is under-trained); "
              "† no training possible: the probe stands in.</p>"
            + "<h2>Score against accuracy</h2>" + _scatters(result))
    return page("transferlab bench rank", body)


def _merge_chart(result: dict[str, Any]) -> str:
    """Accuracy per task (a marker per task) and its mean (the bar) for every method."""
    plt = _plt()
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
    published ViT-B/32 ordering."""
    from .._published import merge_published as published

    names = list(result["tasks"])
    rows = []
    for r in result["rows"]:
        pub = published(r["method"])
        rows.append([esc(r["method"]), *(fmt(r["accuracy"][n], 3) for n in names), f"<b>{fmt(r['mean'], 3)}</b>",
                     fmt(r["normalized"], 3), f"{pub:.1f}" if pub is not None else "",
                     fmt(r["seconds"], 1) if r["seconds"] is not None else ""])
    o = result["options"]
    body = (f"<h1>transferlab bench merge</h1><p class='muted'>base <code>{esc(result['model'])}</code> · "
            f"{len(names)} tasks ({esc(', '.join(result['targets']))}) · each fine-tuned with "
            f"<code>{esc(o.get('fit_method'))}</code> for {esc(o.get('epochs'))} epochs · "
            f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>"
            + table(["method", *names, "mean", "normalised", "published ViT-B/32 (8 tasks)", "merge s"], rows)
            + "<p class='muted'>Accuracy of the merged network with each task's own head on that task's test split. "
              "Normalised: merged / individually fine-tuned, averaged over tasks. base_with_heads: the pretrained "
              "network with the fine-tuned heads (the published 'pretrained' row is zero-shot CLIP). Published: "
              "TIES-Merging and AdaMerging papers (adamerging ~ atlas with the entropy objective). "
              + (f"+tuned rows: lam picked on held-out training examples from {esc(o.get('lam_grid'))}: "
                 f"{esc(o.get('tuned_lam'))}." if o.get("tuned_lam") else "") + "</p>"
            + (_merge_chart(result) if result["rows"] else ""))
    return page("transferlab bench merge", body)
