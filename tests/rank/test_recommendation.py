"""When a baseline beats the recommended model on the accuracy-type scores, the recommendation says so (issue 29: raw
pixels had the best linear probe and kNN on digits, yet the recommendation only said "+0.25 over the best
baseline")."""

from __future__ import annotations

from transferlab.rank._result import ModelScores, RankResult


def _result(pixels_knn: float) -> RankResult:
    def m(ref, name, knn, probe, logme, consensus, rank, baseline=False):
        return ModelScores(ref, name, {"knn": knn, "linear_probe": probe, "logme": logme},
                           {"knn": None, "linear_probe": None, "logme": None}, rank, consensus,
                           {"baseline": True} if baseline else {})

    models = [m("builtin:efficientnet_lite0", "EfficientNet-Lite0", 0.80, 0.82, 1.2, 0.9, 1),
              m("builtin:pixels", "Pixels (PCA-128)", pixels_knn, 0.95, -0.3, 0.6, 2, baseline=True)]
    return RankResult({"name": "digits", "size": 300}, "zoo", ["knn", "linear_probe", "logme"], models, {})


def test_a_baseline_that_wins_the_probes_is_named_in_the_recommendation():
    text = _result(0.97).recommendation()
    assert text.startswith("Recommended: EfficientNet-Lite0:")
    assert ("but a baseline scores higher on the accuracy-type scores (linear_probe 0.950 for Pixels (PCA-128) "
            "against 0.820, knn 0.970 for Pixels (PCA-128) against 0.800)") in text


def test_no_note_when_the_recommended_model_wins_the_probes():
    r = _result(0.5)
    r.models[1].scores["linear_probe"] = 0.5
    assert "baseline scores higher" not in r.recommendation()
