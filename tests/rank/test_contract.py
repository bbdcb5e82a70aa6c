"""Contract tests: every registered metric, enrolled automatically."""

import numpy as np
import pytest
from tests.conftest import make_blobs

from transferlab.errors import MetricError, TransferlabError
from transferlab.rank import list_metrics, metric_info, score

METRICS = list_metrics()
FEATURE_METRICS = [m for m in METRICS if metric_info(m)["needs"] == "features"]
PROB_METRICS = [m for m in METRICS if metric_info(m)["needs"] == "source_probs"]


def _probs(y, n_source=6, informative=True, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((len(y), n_source))
    if informative:
        logits[np.arange(len(y)), y % n_source] += 4.0
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _source_stats(name, f):
    """Metrics that need the source domain's feature statistics (PED): the features' own stand in."""
    return {"source_mean": f.mean(0), "source_std": f.std(0)} if metric_info(name).get("needs_source_stats") else {}


def test_metrics_needing_source_statistics_say_so_without_them():
    f, y = make_blobs()
    for name in [m for m in METRICS if metric_info(m).get("needs_source_stats")]:
        with pytest.raises(MetricError, match="not applicable.*source-domain feature statistics"):
            score(name, f, y)


def test_expected_metrics_are_registered():
    assert {"logme", "leep", "nce", "hscore", "hscore_shrinkage", "knn", "linear_probe", "nleep", "transrate", "gbc",
            "sfda", "etran", "etran_energy", "etran_lda", "ped", "tmi"} <= set(METRICS)


@pytest.mark.parametrize("name", METRICS)
def test_metadata(name):
    info = metric_info(name)
    assert info["needs"] in ("features", "source_probs")
    assert info["higher_is_better"] is True
    assert info["paper"] and info["reference"] and info["summary"]


# metrics that, by design, do not separate class structure from noise
SPREAD_METRICS = {"tmi": "scores within-class spread (H(X|Y)); unstructured noise maximises it"}


@pytest.mark.parametrize("name", METRICS)
def test_more_transferable_scores_higher(name):
    """Well-separated classes (or an informative source head) must beat noise."""
    if name in SPREAD_METRICS:
        pytest.skip(SPREAD_METRICS[name])
    good_f, y = make_blobs(30, 4, 16, sep=4.0, seed=1)
    bad_f = np.random.default_rng(2).standard_normal(good_f.shape)
    good = score(name, good_f, y, _probs(y, informative=True), **_source_stats(name, good_f))
    bad = score(name, bad_f, y, _probs(y, informative=False), **_source_stats(name, bad_f))
    assert np.isfinite(good) and np.isfinite(bad)
    assert good > bad


@pytest.mark.parametrize("name", FEATURE_METRICS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_rejected(name, bad):
    f, y = make_blobs()
    f[3, 2] = bad
    with pytest.raises(MetricError, match=r"non-finite value\(s\) \(NaN/inf\) in 1 row\(s\), first row 3"):
        score(name, f, y)


@pytest.mark.parametrize("name", ["knn", "linear_probe"])
def test_cross_validated_metrics_need_two_examples_per_class(name):
    f, y = make_blobs(5, 3)
    y = y.copy()
    y[-1] = 3  # class 3 has a single example
    with pytest.raises(MetricError, match="at least 2 examples per class"):
        score(name, f, y)


@pytest.mark.parametrize("name", METRICS)
def test_single_class_is_rejected(name):
    f = np.random.default_rng(0).standard_normal((10, 3))
    y = np.zeros(10, dtype=int)
    with pytest.raises(MetricError, match="single class"):
        score(name, f, y, _probs(y))


def test_source_prob_metrics_need_probabilities():
    f, y = make_blobs()
    for name in PROB_METRICS:
        with pytest.raises(MetricError, match="source classifier head"):
            score(name, f, y, None)
        with pytest.raises(MetricError, match="sum to 1"):
            score(name, f, y, np.ones((len(y), 4)))


def test_unknown_metric_lists_known():
    with pytest.raises(TransferlabError, match="unknown metric 'logmee'; known: .*logme"):
        score("logmee", np.zeros((4, 2)), np.array([0, 0, 1, 1]))


def test_wrong_shapes():
    with pytest.raises(MetricError, match="2-D"):
        score("logme", np.zeros(10), np.zeros(10, dtype=int))
    with pytest.raises(MetricError, match="10 feature rows but 9 labels"):
        score("logme", np.zeros((10, 2)), np.zeros(9, dtype=int))


def test_linear_probe_refuses_too_many_classes_at_once():
    """10,000 classes x 6 examples: the probe would hold N x C probabilities per step; it says so in no time."""
    import time

    from transferlab.errors import MetricError
    from transferlab.rank import score

    y = np.repeat(np.arange(10_000), 5)
    f = np.random.default_rng(0).standard_normal((len(y), 6))
    t0 = time.perf_counter()
    with pytest.raises(MetricError, match="linear_probe would hold N x C = 50,000 x 10,000.*use knn"):
        score("linear_probe", f, y)
    assert time.perf_counter() - t0 < 1.0


DEGENERATE = {
    "constant": np.ones((30, 8)),
    "zeros": np.zeros((30, 8)),
    "tiny": np.random.default_rng(1).standard_normal((30, 8)) * 1e-30,
    "huge": np.random.default_rng(2).standard_normal((30, 8)) * 1e30,
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", [m for m in list_metrics() if m != "ped"])
def test_every_metric_is_finite_or_says_why_on_degenerate_features(name, case):
    """Constant, all-zero, 1e-30 and 1e30 features: a finite score, or a MetricError (never NaN, never a numpy
    LinAlgError or ValueError)."""
    import math

    f = DEGENERATE[case]
    y = np.repeat(np.arange(3), 10)
    probs = np.full((30, 4), 0.25)
    try:
        v = score(name, f, y, probs if metric_info(name).get("needs") == "source_probs" else None)
    except MetricError as exc:
        assert str(exc)
        return
    assert math.isfinite(v)


# -- every metric, on one fixed input: finite, deterministic, order- and label-free, options checked ----------------

#: metrics whose definition follows the order of the examples: the score is seeded, so a fixed order gives a fixed
#: score, but another order draws other folds / another initialisation (test_properties.py says the same)
ORDER_DEPENDENT = {"knn": "stratified folds drawn by position", "linear_probe": "stratified folds drawn by position",
                   "nleep": "its mixture's k-means initialisation follows the row order"}
#: metrics whose definition follows the order of the class labels (the same folds hold other classes)
LABEL_ORDER_DEPENDENT = {"knn": "stratified folds follow the label order; vote ties go to the lower label",
                         "linear_probe": "stratified folds follow the label order"}


def _fixed(name):
    f, y = make_blobs(12, 3, 6, sep=2.0, seed=5)
    return f, y, _probs(y, seed=5), _source_stats(name, f)


@pytest.mark.parametrize("name", METRICS)
def test_a_fixed_input_scores_finite_and_the_same_twice(name):
    f, y, p, extra = _fixed(name)
    a, b = score(name, f, y, p, **extra), score(name, f.copy(), y.copy(), p.copy(), **extra)
    assert np.isfinite(a) and a == b


@pytest.mark.parametrize("name", METRICS)
def test_a_fixed_input_scores_the_same_in_any_example_order(name):
    if name in ORDER_DEPENDENT:
        pytest.skip(ORDER_DEPENDENT[name])
    f, y, p, extra = _fixed(name)
    perm = np.random.default_rng(0).permutation(len(y))
    assert score(name, f[perm], y[perm], p[perm], **extra) == pytest.approx(score(name, f, y, p, **extra),
                                                                            rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", METRICS)
def test_a_fixed_input_scores_the_same_with_the_classes_renamed(name):
    if name in LABEL_ORDER_DEPENDENT:
        pytest.skip(LABEL_ORDER_DEPENDENT[name])
    f, y, p, extra = _fixed(name)
    assert score(name, f, np.array([2, 0, 1])[y], p, **extra) == pytest.approx(score(name, f, y, p, **extra),
                                                                               rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", METRICS)
def test_an_unknown_option_is_one_clear_error(name):
    f, y, p, extra = _fixed(name)
    with pytest.raises(TransferlabError, match=rf"{name}: no option 'bogus_option'.*its options"):
        score(name, f, y, p, bogus_option=1, **extra)


def test_an_unknown_metric_option_is_refused_before_rank_extracts_anything(monkeypatch):
    import transferlab.zoo as zoo

    def no_work(*a, **k):
        raise AssertionError("rank resolved models before checking the metric options")

    monkeypatch.setattr(zoo, "resolve_model", no_work)
    with pytest.raises(TransferlabError, match=r"logme: no option 'bogus_option'"):
        from transferlab.data import Dataset
        from transferlab.rank import rank

        f, y = make_blobs(4, 2, 3)
        rank(Dataset("d", "image", [f"{i}.png" for i in range(len(y))], y, ("a", "b")), ["builtin:pixels"],
             metrics=["logme"], metric_options={"logme": {"bogus_option": 1}})
