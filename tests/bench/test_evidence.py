"""bench rank's evidence on cases where the answer is known: Δτw over the best prior (a score equal to the ground
truth beats poor priors by a margin the data supports; a score equal to a prior does not), the noise ceiling
(identical replicates: 1; independent ones: about 0), the vectorised weighted τ against scipy's, the priors' values
and where they come from, and the one-line verdict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import weightedtau

from transferlab.bench._evidence import (
    against_ceiling,
    delta_over_priors,
    noise_ceiling,
    rank_evidence,
    resamples,
)
from transferlab.bench._priors import filled, imagenet_accuracy, network_size, prior_values
from transferlab.bench._quality import weighted_tau_rows
from transferlab.bench._rank_evidence_tables import evidence_tables, prior_verdict


def test_the_vectorised_weighted_tau_is_scipys_with_ties_and_missing_values():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(3, 16))
        x = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.random(n)
        y = rng.integers(0, 3, n).astype(float) if trial % 3 == 0 else rng.random(n)
        if trial % 5 == 0:
            x[rng.random(n) < 0.25] = np.nan
        keep = np.isfinite(x)
        ref = weightedtau(x[keep], y[keep]).statistic if keep.sum() >= 2 else np.nan
        got = weighted_tau_rows(x[None], y[None])[0]
        assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref, abs=1e-12)


def _pool(n_targets: int = 3, n_models: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.random((n_targets, n_models))
    poor = {"parameter_count": np.tile(rng.random(n_models), (n_targets, 1)),
            "source_accuracy": np.tile(rng.random(n_models), (n_targets, 1))}
    return truth, poor


def test_a_score_equal_to_the_ground_truth_beats_poor_priors_by_a_margin_the_data_supports():
    truth, priors = _pool()
    d = delta_over_priors({"oracle": truth.copy()}, priors, truth, n_boot=300, seed=0)
    e = d["scores"]["oracle"]
    assert e["weighted_tau"] == pytest.approx(1.0) and e["delta"] == pytest.approx(1.0 - d["best_prior_tau"])
    assert e["ci"][0] > 0  # the interval is above 0
    assert d["n_boot"] >= 290 and d["resampled"] == "models and targets"
    assert d["best_prior"] == max(d["priors"], key=d["priors"].get)


def test_a_score_equal_to_the_best_prior_is_no_better_than_it():
    truth, priors = _pool()
    d0 = delta_over_priors({}, priors, truth, n_boot=10)
    best = d0["best_prior"]
    d = delta_over_priors({"copy": priors[best].copy()}, priors, truth, n_boot=300, seed=1)
    e = d["scores"]["copy"]
    assert e["delta"] == pytest.approx(0.0) and e["ci"][0] < 0 <= e["ci"][1] + 1e-12  # the interval contains 0
    one = delta_over_priors({"copy": priors[best][:1]}, {k: v[:1] for k, v in priors.items()}, truth[:1], n_boot=50)
    assert one["resampled"] == "models"  # one target: only the models are resampled


def test_no_prior_with_a_value_gives_no_delta():
    truth, _ = _pool()
    assert delta_over_priors({"s": truth}, {"p": np.full_like(truth, np.nan)}, truth, n_boot=10) is None


def test_the_noise_ceiling_of_identical_replicates_is_1_and_of_independent_ones_about_0():
    truth, _ = _pool(n_targets=2, n_models=14)
    same = noise_ceiling([truth, truth.copy()], n_boot=200, seed=0)
    assert same["weighted_tau"] == pytest.approx(1.0) and same["ci"] == pytest.approx([1.0, 1.0])
    assert same["per_target"] == pytest.approx([1.0, 1.0]) and same["replicates"] == 2
    rng = np.random.default_rng(5)
    indep = noise_ceiling([rng.random((4, 40)) for _ in range(3)], n_boot=200, seed=0)
    assert abs(indep["weighted_tau"]) < 0.2 and indep["ci"][0] < 0 < indep["ci"][1]
    assert noise_ceiling([truth], n_boot=10) is None
    # a score's τw against one replicate, as a fraction of the ceiling, and whether it reaches the interval
    noisy = truth + np.random.default_rng(1).normal(0, 0.05, truth.shape)
    ceiling = noise_ceiling([truth, noisy], n_boot=200, seed=0)
    res = against_ceiling({"oracle": truth, "random": np.random.default_rng(2).random(truth.shape)},
                          [truth, noisy], ceiling)
    assert res["oracle"]["within"] and res["oracle"]["fraction"] > 0.9
    assert not res["random"]["within"] and res["random"]["fraction"] < 0.5


def test_resamples_are_seeded():
    a, b = resamples(10, 3, 20, 7), resamples(10, 3, 20, 7)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def test_the_imagenet_prior_says_where_its_number_comes_from():
    v, src = imagenet_accuracy("builtin:efficientnet_lite0", {"source_dataset": "ImageNet-1k",
                                                              "source_accuracy": 75.1})
    assert v == 75.1 and "metadata" in src and "ImageNet-1k" in src
    v, src = imagenet_accuracy("timm:resnet18", {"imagenet_accuracy": 69.7, "source_dataset": "ImageNet-1k",
                                                 "source_accuracy": 1.0})
    assert v == 69.7 and src == "the zoo entry's imagenet_accuracy"
    v, src = imagenet_accuracy("timm:resnet18.a1_in1k", {})
    assert v is None and "pretrained cfg of resnet18.a1_in1k carries no accuracy" in src
    v, src = imagenet_accuracy("builtin:small_vit_shapes", {"source_dataset": "shapes", "source_accuracy": 67.2})
    assert v is None and src.startswith("none") and "ImageNet-1k" in src  # an accuracy on another task is not it
    v, _ = imagenet_accuracy("x:y", {"source_dataset": "ImageNet-21k", "source_accuracy": 80.0})
    assert v is None


def test_prior_values_count_flops_once_and_rank_missing_values_last(tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path))
    _, refs = tiny_zoo
    # the first states no parameters (a timm model a warm cache never loaded): they are counted on its network
    models = [{"ref": r, "name": r, "metadata": {"params": 10 * i} if i else {}} for i, r in enumerate(refs)]
    pv = prior_values(models, 32)
    flops = pv["size_prior"]["values"]
    assert flops[refs[0]] == flops[refs[1]] > 0  # two weights of one architecture: the same FLOPs
    assert flops["builtin:pixels"] is None and "not a torch image network" in pv["size_prior"]["sources"]["builtin:pixels"]
    assert "32x32" in pv["size_prior"]["sources"][refs[0]]
    assert len(list((tmp_path / "priors").glob("*.json"))) == 2  # one per model identity (weights), cached
    assert prior_values(models, 32)["size_prior"]["values"] == flops
    assert len(list((tmp_path / "priors").glob("*.json"))) == 2
    assert network_size(refs[0], 64)["flops"] > 3 * flops[refs[0]]  # 4x the pixels
    counted = network_size(refs[0], 32)["params"]
    assert counted > 1000 and pv["parameter_count"]["values"][refs[0]] == counted
    assert pv["parameter_count"]["sources"][refs[0]] == "counted on the loaded network"
    assert pv["parameter_count"]["values"][refs[1]] == 10 and pv["parameter_count"]["values"]["builtin:pixels"] == 20
    assert filled({"a": 3.0, "b": None, "c": 1.0}) == {"a": 3.0, "b": 0.0, "c": 1.0}
    assert filled({"a": None}) is None


def _d(score: np.ndarray, truth: np.ndarray, priors: dict[str, np.ndarray], replicates=None) -> dict:
    models = [f"m{i}" for i in range(truth.shape[1])]
    targets = [f"t{i}" for i in range(truth.shape[0])]
    as_dict = lambda a: {t: dict(zip(models, map(float, a[i]), strict=True)) for i, t in enumerate(targets)}  # noqa: E731
    ev = rank_evidence({"consensus": as_dict(score)}, {p: as_dict(v)["t0"] for p, v in priors.items()},
                       as_dict(truth), [as_dict(r) for r in replicates] if replicates else None, models, n_boot=200)
    return {"evidence": ev, "targets": targets, "models": [{"ref": m, "name": m} for m in models]}


def test_the_verdict_is_one_line_that_says_whether_the_margin_is_supported():
    truth, priors = _pool()
    good = prior_verdict(_d(truth, truth, priors))
    assert good.startswith("The recommended ordering (consensus) beats the best prior on this pool by a margin the "
                           "data supports") and "\n" not in good and "resamples of models and targets" in good
    best = delta_over_priors({}, priors, truth, n_boot=10)["best_prior"]
    same = prior_verdict(_d(priors[best], truth, priors))
    assert "does not beat the best prior" in same and f"the prior {best} is the honest choice" in same
    one = truth[:1]  # one target, a prior that is the ground truth itself, a random score
    worse = prior_verdict(_d(np.random.default_rng(3).random(one.shape), one, {"parameter_count": one}))
    assert worse.startswith("The best prior beats the recommended ordering")
    assert prior_verdict({}) is None  # an older bench.json: no verdict


def test_the_noise_table_puts_the_ceiling_beside_every_score():
    truth, priors = _pool(n_targets=2)
    d = _d(truth, truth, priors, replicates=[truth, truth])
    tables = {t.name: t for t in evidence_tables(d)}
    assert set(tables) == {"priors", "noise"}  # no d["priors"]: no table of sources
    rows = tables["noise"].rows
    assert rows[0]["score"] == "noise ceiling (2 replicates)" and rows[0]["tau"] == pytest.approx(1.0)
    assert rows[1] == {"score": "consensus", "tau": pytest.approx(1.0), "fraction": pytest.approx(1.0), "within": "yes",
                       "t0": pytest.approx(1.0), "t1": pytest.approx(1.0)}
    assert tables["priors"].verdicts == [prior_verdict(d)]


@pytest.mark.slow
def test_bench_rank_carries_the_priors_the_delta_and_the_noise_ceiling(tiny_zoo, tmp_path):
    """End to end (the linear-probe ground truth, 2 replicates): the prior rows, Δτw per score, the verdict in
    bench.json and the report, the noise ceiling and its table; every replicate cell computed once."""
    import json

    from transferlab.bench import bench_rank

    zoo, refs = tiny_zoo
    r = bench_rank(zoo, "builtin:digits", metrics="logme,knn", limit=100, image_size=32, n_boot=50, replicates=2)
    assert len(r.replicates) == 2 and r.options["replicates"] == 2
    assert r.ground_truth["builtin:digits"] == pytest.approx(
        {m: (r.replicates[0]["builtin:digits"][m] + r.replicates[1]["builtin:digits"][m]) / 2 for m in refs})
    d = r.to_dict()
    assert set(d["priors"]) == {"parameter_count", "source_accuracy", "imagenet_accuracy", "size_prior"}
    assert all(v is None for v in d["priors"]["imagenet_accuracy"]["values"].values())  # never made up
    assert {"size_prior", "parameter_count"} <= set(d["baselines"]) and "imagenet_accuracy" not in d["baselines"]
    pd = d["evidence"]["prior_delta"]
    assert set(pd["scores"]) == {"logme", "knn", "consensus"} and pd["n_boot"] > 0
    assert d["verdicts"]["priors"] == prior_verdict(d)
    assert d["evidence"]["noise_ceiling"]["replicates"] == 2
    names = [t["name"] for t in d["tables"]]
    assert names[:4] == ["tau", "prior_sources", "priors", "noise"]
    tau_rows = {row["score"] for row in d["tables"][0]["rows"]}
    assert {"size_prior (prior)", "random (baseline)"} <= tau_rows
    html = r.save(tmp_path / "out")["html"].read_text()
    assert "Δτw over the best prior" in html and "noise ceiling (2 replicates)" in html
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["verdicts"]["priors"] == d["verdicts"]["priors"]
