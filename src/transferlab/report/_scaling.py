"""HTML report of ``bench scaling``: target accuracy against the pretraining size on a log axis (every seed's point,
the means, the fitted law per fine-tuning size, the held-back point and its prediction), then the declared tables."""

from __future__ import annotations

from typing import Any

from ._html import esc, figure_png, page, pyplot
from ._table import render_html, tables_of


def scaling_figure(result: dict[str, Any]) -> Any:
    """One colour per fine-tuning size: faint dots per seed, the means with their sd, the fitted law (solid, extended
    dashed to the held-back size), the held-back measurement (a star) and the law's prediction there (a cross)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    plt = pyplot()
    r = result
    held = r["held_back_size"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, n in enumerate(r["finetune"]):
        colour = f"C{i}"
        runs = [x for x in r["runs"] if x["finetune"] == n]
        ax.scatter([x["size"] for x in runs], [x["test_accuracy"] for x in runs], s=12, color=colour, alpha=0.35,
                   linewidths=0)
        pts = [p for p in r["points"] if p["finetune"] == n and not p["held_back"]]
        ax.errorbar([p["size"] for p in pts], [p["accuracy_mean"] for p in pts],
                    yerr=[p["accuracy_sd"] or 0.0 for p in pts], fmt="o", ms=5, color=colour, capsize=2)
        f = next((f for f in r["fits"] if f["finetune"] == n), None)
        if f and f.get("curve"):
            xs, ys = f["curve"]["d"], f["curve"]["accuracy"]
            last = max(p["size"] for p in pts)
            inside = [k for k, x in enumerate(xs) if x <= last * (1 + 1e-9)]
            ax.plot([xs[k] for k in inside], [ys[k] for k in inside], "-", color=colour, lw=1.5)
            ax.plot(xs[inside[-1]:], ys[inside[-1]:], "--", color=colour, lw=1.2)
            ax.plot([held], [f["predicted"]], "x", color=colour, ms=9, mew=2)
        if f:
            ax.errorbar([held], [f["measured"]], yerr=[f.get("measured_sd") or 0.0], fmt="*", ms=12, color=colour,
                        mec="black", mew=0.6, capsize=2)
    ax.axvline(held, color="#bbb", lw=0.8, ls=":")
    ax.set_xscale("log")
    sizes = sorted({p["size"] for p in r["points"]})
    ax.set_xticks(sizes, [f"{x:,}" for x in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("pretraining examples $D_p$ (log scale)")
    ax.set_ylabel(f"test accuracy on {r['target'].removeprefix('builtin:')}")
    ax.set_title(r"log law $(\log(A \cdot D_p^{\alpha}))^{\beta}$ fitted per fine-tuning size; "
                 f"{held:,} held back", fontsize=9)
    handles = [Line2D([], [], color=f"C{i}", marker="o", label=f"{n} fine-tuning examples")
               for i, n in enumerate(r["finetune"])]
    handles += [Line2D([], [], color="#555", ls="--", label="law, extrapolated"),
                Line2D([], [], color="#555", ls="", marker="*", mec="black", ms=10, label="held back: measured"),
                Line2D([], [], color="#555", ls="", marker="x", mew=2, label="held back: predicted")]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def scaling_bench_html(result: dict[str, Any]) -> str:
    """``bench scaling``: the plot, then the accuracy table and the law's fit with its held-back prediction."""
    r = result
    o = r.get("options", {})
    body = (f"<h1>transferlab bench scaling</h1><p class='muted'>source {esc(r['source'])} · target "
            f"{esc(r['target'])} · architecture {esc(r['arch'])} · seeds {esc(r['seeds'])} · pretraining "
            f"{esc(o.get('pretrain_epochs'))} epochs (one thread) · fine-tuning {esc(o.get('epochs'))} epochs · law "
            f"{esc(r['law'])} (Isik et al. 2024, arXiv 2402.04177)</p>")
    fig = figure_png(scaling_figure(r), "target accuracy against pretraining examples, with the fitted log law")
    return page("transferlab bench scaling", body + fig + "".join(render_html(t) for t in tables_of(r)))
