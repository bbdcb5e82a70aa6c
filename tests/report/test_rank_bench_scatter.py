"""bench rank's scatter: with many models whose scores and accuracies are close, no two model labels overlap (each
model is a colour and shape, named once in a legend with its short name), and the panels stay phone-sized."""

from __future__ import annotations

import itertools

import pytest


def _result(n_models: int, metrics=("logme", "knn"), targets=("builtin:digits",)):
    names = [f"timm/vit_base_patch16_224.augreg_in21k_ft_{i}" for i in range(n_models - 2)] + ["Pixels", "ResNet-S"]
    refs = [f"ref{i}" for i in range(n_models)]
    # all but two models within 0.01 of each other on both axes, the two others far away (so the axes do not zoom
    # in on the cluster): labels beside the points would sit on top of each other
    def spread(i: int, centre: float, far: tuple[float, float]) -> float:
        return far[0] if i == n_models - 2 else far[1] if i == n_models - 1 else centre + 0.01 * i / n_models

    scores = {t: {m: {r: spread(i, 0.5, (0.0, 1.0)) for i, r in enumerate(refs)} for m in metrics} for t in targets}
    gt = {t: {r: spread(i, 0.8, (0.2, 0.95)) for i, r in enumerate(refs)} for t in targets}
    summ = {"weighted_tau": {t: 0.5 for t in targets}}
    return {"targets": list(targets), "models": [{"ref": r, "name": n} for r, n in zip(refs, names, strict=True)],
            "scores": scores, "ground_truth": gt, "metrics": {m: summ for m in metrics}}


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("n_models,targets", [(14, ("builtin:digits",)), (20, ("a", "b", "c"))])
def test_model_labels_do_not_overlap_when_points_are_close(n_models, targets):
    from matplotlib.text import Text

    from transferlab.report._html import short_names
    from transferlab.report._rank_bench import scatter_figure

    r = _result(n_models, targets=targets)
    fig = scatter_figure(r)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    wanted = set(short_names([m["name"] for m in r["models"]]))
    labels = [t for t in fig.findobj(Text) if t.get_text() in wanted and t.get_visible()]
    assert {t.get_text() for t in labels} == wanted  # every model is named ...
    assert len(labels) == len(wanted)  # ... once (in the legend), not beside each of its points in every panel
    assert all(len(t.get_text()) <= 20 for t in labels)  # short names
    boxes = [t.get_window_extent(renderer) for t in labels]
    pairs = itertools.combinations(zip(labels, boxes, strict=True), 2)
    clashes = [(a.get_text(), b.get_text()) for (a, ba), (b, bb) in pairs if _overlap(ba, bb)]
    assert not clashes
    for ax in fig.axes:  # no model name written inside a panel
        assert not [t for t in ax.texts if t.get_text() in wanted]
    # each model its own (colour, marker), the same in every panel
    legend = fig.legends[0]
    styles = [(h.get_color(), h.get_marker()) for h in legend.legend_handles]
    assert len(set(styles)) == n_models
    assert fig.get_size_inches()[0] <= 3.0 * len(targets) + 0.5  # one panel column is phone-sized (3.5 in)
