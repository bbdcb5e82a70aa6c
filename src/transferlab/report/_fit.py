"""HTML report of a fit: learning curves, confusion matrix, per-class precision/recall, Grad-CAM panels."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._html import esc, figure_png, fmt, page, pyplot, table


def _curves(history: list[dict[str, float]]) -> str:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for ax, what in ((a, "loss"), (b, "accuracy")):
        ax.plot(ep, [h[f"train_{what}"] for h in history], "o-", label="train")
        if history and f"val_{what}" in history[0]:
            ax.plot(ep, [h[f"val_{what}"] for h in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.legend()
    return figure_png(fig, "learning curves")


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> str:
    from sklearn.metrics import confusion_matrix

    plt = pyplot()
    cm = confusion_matrix(y_true, y_pred, labels=range(len(names)))
    fig, ax = plt.subplots(figsize=(0.55 * len(names) + 2.5, 0.5 * len(names) + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    return figure_png(fig, "confusion matrix")


def _cam_panel(panels: list[dict[str, Any]]) -> str:
    """Correct examples in the first row, wrong ones in the second, each panel 2.6 in (about 290 px) wide, with one
    colour scale for the maps (each map is scaled to [0, 1] by Grad-CAM)."""
    plt = pyplot()
    rows = [[p for p in panels if p["correct"]], [p for p in panels if not p["correct"]]]
    rows = [r for r in rows if r]
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.6 * ncol + 1.0, 2.9 * len(rows)), squeeze=False)
    shown = None
    for r, row in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row):
                continue
            p = row[c]
            ax.imshow(p["image"])
            shown = ax.imshow(p["cam"], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(f"{'✓' if p['correct'] else '✗'} predicted {p['pred']}\n(true {p['true']})", fontsize=9,
                         color="green" if p["correct"] else "red")
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
        bar.set_label("Grad-CAM weight for the predicted class", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return figure_png(fig, "Grad-CAM", wide=True)  # on a phone: scroll, not shrink to thumbnails


def _input_size(metrics: dict[str, Any]) -> str:
    """What the inputs were resized or cut to: image size for images, tokens for texts."""
    if metrics.get("image_size"):
        return f"image size {metrics['image_size']}"
    if metrics.get("max_length"):
        return f"up to {metrics['max_length']} tokens"
    return "inputs as given"


def fit_report_html(metrics: dict[str, Any], config: dict[str, Any], y_true: np.ndarray, y_pred: np.ndarray,
                    cam_panels: list[dict[str, Any]] | None = None, cam_note: str = "") -> str:
    from sklearn.metrics import precision_recall_fscore_support

    names = list(config["class_names"])
    prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=range(len(names)), zero_division=0)
    head = (f"<h1>transferlab fit: {esc(metrics['method'])} on {esc(metrics['model'])}</h1>"
            f"<p class='muted'>dataset {esc(metrics['dataset'])} · {esc(_input_size(metrics))} · "
            f"transferlab {esc(config.get('transferlab_version'))}</p>")
    head += "".join(f"<div class='note'>{esc(w)}</div>" for w in metrics.get("warnings") or [])
    summary = table(["measure", "value"], [
        ["test accuracy", fmt(metrics.get("test_accuracy"))], ["validation accuracy", fmt(metrics.get("val_accuracy"))],
        ["trainable parameters", f"{metrics['trainable_params']:,}"], ["total parameters", f"{metrics['total_params']:,}"],
        ["training seconds", f"{metrics['train_seconds']:.1f}"], ["peak RSS (MB)", f"{metrics['peak_rss_mb']:.0f}"]])
    per_class = table(["class", "precision", "recall", "f1", "support"],
                      [[esc(n), f"{a:.3f}", f"{b:.3f}", f"{c:.3f}", int(d)]
                       for n, a, b, c, d in zip(names, prec, rec, f1, sup, strict=True)])
    body = head + summary
    if metrics.get("history"):
        body += "<h2>Learning curves</h2>" + _curves(metrics["history"])
    body += "<h2>Confusion matrix (test)</h2>" + _confusion(y_true, y_pred, names)
    body += "<h2>Per class (test)</h2>" + per_class
    if cam_panels:
        body += ("<h2>Grad-CAM: correct and wrong test examples</h2>" + _cam_panel(cam_panels)
                 + "<p class='muted'>Where the model looked for the predicted class (pytorch-grad-cam).</p>")
    elif cam_note:
        body += f"<h2>Grad-CAM</h2><p class='muted'>{esc(cam_note)}</p>"
    return page(f"transferlab fit — {metrics['method']}", body)
