"""The HTML reports read well at 1400 px and on a phone: a viewport, tables that scroll in their own box, a compact
rank table with the full one folded, figures whose text stays readable, the recommendation explained, bench rank says
which metric to trust and when its intervals say nothing, labels that stay distinct. (Screenshots in headless
Chromium were reviewed by hand; these tests hold what the HTML and the figures themselves can.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

from transferlab.report import _html


def test_every_page_has_a_viewport_and_tables_scroll_in_their_own_box():
    html = _html.page("t", _html.table(["a", "b"], [[1, 2]]))
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    assert "<div class='scroll'><table>" in html
    assert re.search(r"\.scroll\{overflow-x:auto", html)


@pytest.mark.parametrize("names", [
    ["EfficientNet-Lite0", "EfficientNet-Lite1", "EfficientNet-Lite2"],
    ["ConvNeXt-S · textures", "ConvNeXt-S · shapes", "ConvNeXt-S · fashion"],
    ["timm/vit_base_patch16_224.augreg_in21k", "timm/vit_base_patch16_224.augreg_in1k", "short"],
])
def test_short_names_stay_distinct_where_cutting_to_a_prefix_would_not(names):
    short = _html.short_names(names)
    assert len(set(short)) == len(names)
    assert all(len(s) <= 20 for s in short)
    assert _html.short_names(["abc", "abd"]) == ["abc", "abd"]


@pytest.fixture(scope="module")
def ranking():
    from transferlab.data import Dataset
    from transferlab.rank import rank

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    x = rng.standard_normal((120, 3, 8, 8)).astype(np.float32) + y[:, None, None, None] * 0.5
    ds = Dataset.from_arrays(x, y, name="blobs")
    return rank(ds, "builtin:pixels", ["knn", "linear_probe", "logme", "hscore", "transrate", "gbc"])


def test_rank_report_compact_table_with_the_full_one_folded(ranking):
    from transferlab.report import rank_report_html

    html = rank_report_html(ranking.to_dict())
    compact, rest = html.split("<details>", 1)
    ranking_table = compact[compact.index("<h2>Ranking</h2>"):]
    head = re.findall(r"<th class='[^']*'>([^<]+)</th>", ranking_table)
    assert head == ["#", "model", "consensus", "knn", "linear_probe", "gbc", "logme", "params"]
    full = rest[:rest.index("</details>")]
    assert all(f">{m}</th>" in full for m in ranking.metrics)
    assert "(baseline)" in ranking_table  # builtin:pixels is a baseline
    assert "<img alt='metric by model heat-map' class='wide'" in html  # shown at its own size, scrolling


def test_the_recommendation_states_the_expected_accuracy_of_a_probe(ranking):
    from scipy.stats import binomtest

    from transferlab.report import rank_report_html

    e = ranking.expected_accuracy()
    acc = ranking.best().scores["linear_probe"]
    assert e["accuracy"] == acc and e["n"] == 120
    ci = binomtest(round(acc * 120), 120).proportion_ci(method="wilson")
    assert (e["low"], e["high"]) == pytest.approx((ci.low, ci.high))
    assert e["low"] < acc < e["high"]
    assert ranking.to_dict()["expected_accuracy"] == e
    html = rank_report_html(ranking.to_dict())
    assert f"reaches <b>{acc:.3f}</b> in cross-validation (95 % interval {e['low']:.3f}–{e['high']:.3f}" in html


def test_wilson_interval_matches_the_textbook_value():
    """80 of 100 right: the 95 % Wilson interval is [0.7112, 0.8666] (p ± z·sqrt(p(1-p)/n + z²/4n²), shrunk to
    (p + z²/2n)/(1 + z²/n): worked by hand)."""
    from transferlab.rank._result import ModelScores, RankResult

    m = ModelScores("a", "A", {"linear_probe": 0.8}, {"linear_probe": 1}, 1, 1.0)
    r = RankResult({"size": 100}, "z", ["linear_probe"], [m], {})
    e = r.expected_accuracy()
    assert (e["low"], e["high"]) == pytest.approx((0.7112, 0.8666), abs=1e-4)
    assert "(95 % interval 0.711-0.867 over 100 examples)" in r.expectation()
    no_probe = RankResult({"size": 100}, "z", ["knn"], [ModelScores("a", "A", {"knn": 0.8}, {"knn": 1}, 1, 1.0)], {})
    assert no_probe.expected_accuracy() is None and no_probe.expectation() is None


def _bench(taus: dict[str, float], baselines: dict[str, float], gt: dict[str, float], ci=(0.1, 0.9)):
    def summ(v):
        return {"weighted_tau": {"t": v, "mean": v}, "weighted_tau_ci": {"t": list(ci) if ci else None},
                "rel_at_1": {"t": 1.0, "mean": 1.0}}

    return {"targets": ["t"], "metrics": {k: summ(v) for k, v in taus.items()},
            "baselines": {k: summ(v) for k, v in baselines.items()}, "ground_truth": {"t": gt},
            "models": [{"ref": r, "name": r} for r in gt]}


def test_bench_rank_says_which_metric_to_trust():
    from transferlab.bench._tables import trust  # computed on the result (its to_dict()'s verdicts)

    gt = {f"m{i}": 0.5 + i / 20 for i in range(6)}
    r = _bench({"logme": 0.7, "leep": 0.5, "knn": 0.9}, {"random": 0.0, "knn": 0.6}, gt)
    # knn is a probe, a baseline: the metric to trust is logme only if it beats knn's 0.9 -- it does not
    assert trust(r).startswith("No transferability metric beats the knn baseline on this zoo (mean τw 0.90; the "
                               "best metric, logme, 0.70)")
    r = _bench({"logme": 0.7, "leep": 0.5}, {"random": 0.0, "parameter_count": 0.4}, gt)
    assert trust(r) == ("Trust logme on this zoo: the highest mean weighted τ, 0.70 over 1 target (lowest 0.70), "
                        "ahead of the best baseline, parameter_count (0.40).")


def test_bench_rank_warns_when_its_intervals_say_nothing():
    from transferlab.report._rank_bench import degenerate_warnings

    few = _bench({"logme": 0.7}, {"random": 0.0}, {"a": 0.5, "b": 0.7, "c": 0.9})
    assert degenerate_warnings(few) == [
        "t: only 3 models have a ground truth; a weighted τ over so few models and its bootstrap interval are not "
        "informative (add models or targets)."]
    gt = {f"m{i}": 0.5 + i / 20 for i in range(6)}
    assert degenerate_warnings(_bench({"logme": 0.7}, {}, gt)) == []
    flat = degenerate_warnings(_bench({"logme": 0.7, "leep": 0.2}, {}, gt, ci=(0.4, 0.4)))
    assert flat and "degenerate (empty or of zero width) for 2 of 2 metrics" in flat[0]
    tied = degenerate_warnings(_bench({"logme": 0.7}, {}, {**gt, "x": max(gt.values()), "y": max(gt.values())}))
    assert tied == ["t: 3 models tie at the best accuracy (0.750): rel@1 and the order among them are arbitrary; a "
                    "harder target or a larger test split separates them."]


def test_bench_rank_scatters_label_both_axes_and_keep_names_apart(monkeypatch):
    from transferlab.report import _rank_bench as bench_report

    figs = []
    monkeypatch.setattr(bench_report, "figure_png", lambda fig, alt, wide=False: figs.append(fig) or "")
    names = ["EfficientNet-Lite0", "EfficientNet-Lite1", "EfficientNet-Lite2", "Pixels", "ResNet-S"]
    gt = {n: 0.5 + i / 10 for i, n in enumerate(names)}
    r = _bench({"logme": 0.7}, {}, gt)
    r["scores"] = {"t": {"logme": {n: float(i) for i, n in enumerate(names)}}}
    bench_report._scatters(r)
    ax = figs[0].axes[0]
    assert ax.get_xlabel() == "logme score" and ax.get_ylabel() == "ground-truth accuracy"
    labels = [t.get_text() for t in figs[0].legends[0].get_texts()]  # named once, in the legend
    assert sorted(labels) == sorted(names)  # whole: they fit in 20 characters, and no two are cut alike


def test_bench_merge_report_has_the_accuracy_plot():
    from transferlab.bench import MergeBenchResult
    from transferlab.report import merge_bench_html

    r = MergeBenchResult("m", ["t1", "t2"], ["t1", "t2"], {"t1": 0.8, "t2": 0.5}, {"ties": {"t1": 0.4, "t2": 0.5}},
                         {"ties": 1.0})
    assert "<img alt='accuracy per task per method' class='wide'" in merge_bench_html(r.to_dict())


def test_fit_report_epochs_are_whole_numbers_and_gradcam_has_a_colour_scale(monkeypatch):
    from transferlab.report import _fit

    figs = []
    monkeypatch.setattr(_fit, "figure_png", lambda fig, alt, wide=False: figs.append((fig, wide)) or "")
    _fit._curves([{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": e / 10} for e in range(1, 4)])
    fig, _ = figs.pop()
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    img = np.zeros((32, 32, 3))
    panels = [{"image": img, "cam": np.random.default_rng(0).random((32, 32)), "true": "a", "pred": p,
               "correct": p == "a"} for p in ("a", "a", "b")]
    _fit._cam_panel(panels)
    fig, wide = figs.pop()
    assert wide  # at its own size on a phone
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "Grad-CAM weight" in bars[0].get_ylabel()
    assert fig.get_size_inches()[0] / 2 >= 2.5  # two columns (2 right, 1 wrong), each at least 2.5 in wide


def test_auto_report_lists_fitted_candidates_and_a_student_of_the_datas_kind():
    """auto's report (issue 29): "Candidates fitted" lists only the models a fit stage ran for; the next steps do not
    tell a text model to distil into an image student."""
    from transferlab.report import auto_report_html

    def plan(skipped):
        return {"budget_seconds": 60, "candidates": ["hf:a", "hf:b"], "method": "partial", "method_why": "x",
                "stages": [{"name": "fit 1", "estimate": 1.0, "measured": 1.0, "what": "", "options": {"model": "hf:a"}},
                           {"name": "fit 2", "estimate": 1.0, "measured": None, "what": "", "skipped": skipped,
                            "options": {"model": "hf:b"}}]}

    r = {"metrics": {"model": "hf:a", "method": "partial", "chosen": "fit 1", "max_length": 128, "findings": []},
         "ranking": {"dataset": {"name": "tickets", "modality": "text"}, "models": []}, "findings": [],
         "plan": plan("no time left")}
    html = auto_report_html(r)
    assert "Candidates fitted: hf:a (" in html
    assert "--student builtin:minilm_l6" in html and "small_resnet_shapes" not in html
    r["plan"] = plan(None)
    assert "Candidates fitted: hf:a, hf:b (" in auto_report_html(r)
