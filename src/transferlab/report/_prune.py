"""HTML report of ``bench prune``: target accuracy and pretraining time per pruned source."""

from __future__ import annotations

from typing import Any

from ._html import esc, fmt, page, table

_ROW_LABEL = {"full": "full source", "label_map": "label_map", "feature_map": "feature_map",
              "random": "random (baseline)", "bottom": "bottom of label_map"}


def prune_bench_html(result: dict[str, Any]) -> str:
    """``bench prune``: one table per target."""
    r = result
    o = r.get("options", {})
    body = (f"<h1>transferlab bench prune</h1><p class='muted'>source {esc(r['source'])} · architecture "
            f"{esc(r['arch'])} · keep {r['keep']:g} of the classes · seeds {esc(r['seeds'])} · pretraining "
            f"{o.get('pretrain_epochs')} epochs (one thread) · fine-tuning {o.get('epochs')} epochs</p>")
    for t in r["targets"]:
        cells = []
        for x in (x for x in r["table"] if x["target"] == t):
            acc = fmt(x["accuracy_mean"]) + (f" ± {x['accuracy_sd']:.3f}" if x.get("accuracy_sd") is not None else "")
            cells.append([esc(_ROW_LABEL.get(x["row"], x["row"])), acc, fmt(x.get("delta_vs_full")),
                          str(len(x["classes"])), str(x["n_pretrain"]), f"{x['pretrain_seconds']:.1f}",
                          f"{x['speedup_vs_full']:.2f}×" if x.get("speedup_vs_full") else fmt(None),
                          esc(", ".join(x["classes"]) if x["row"] != "full" else "all")])
        body += f"<h2>target {esc(t)}</h2>" + table(
            ["pretrained on", "target accuracy", "Δ vs full", "classes", "examples", "pretraining s",
             "speed-up", "kept classes"], cells)
    body += ("<p class='muted'>Δ vs full: the mean over seeds of the difference to the full-source model of the same "
             "seed. The mapping methods' surrogate is the full-source model of seed 0.</p>")
    return page("transferlab bench prune", body)
