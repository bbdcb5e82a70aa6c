"""Adaptive ranking (rank/_adaptive.py): rounds over growing stratified subsets, models dropped below the leader.

The pools here are in memory (a model is its feature matrix), so the answer is known: one model whose features carry
the labels is decided in the first round; near-identical models run to the end."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.errors import TransferlabError
from transferlab.rank import consensus
from transferlab.rank._adaptive import (
    AdaptiveSettings,
    Grown,
    Rounds,
    _final_order,
    _zoo_consensus,
    check_settings,
    half_sample,
    run_rounds,
    score_features,
    stratified_order,
    subset_sizes,
)

METRICS = ["knn", "logme", "hscore", "gbc", "transrate"]


def _labels(n: int = 400, c: int = 4) -> np.ndarray:
    return np.repeat(np.arange(c), n // c)


class _Pool:
    """Models as feature matrices (rows in the stratified order); counts the rows each model was asked for."""

    def __init__(self, feats: list[np.ndarray]) -> None:
        self.feats, self.held = feats, [0] * len(feats)

    def grow(self, i: int, n: int) -> Grown:
        new = max(0, n - self.held[i])
        self.held[i] = max(self.held[i], n)
        return Grown(self.feats[i][:n].astype(np.float32), None, new, new)


def _clear_pool(y: np.ndarray, k: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Model 0: the labels one-hot (x3) plus noise; the others: noise alone."""
    rng = np.random.default_rng(seed)
    c = int(y.max()) + 1
    best = np.hstack([3 * np.eye(c)[y], np.zeros((len(y), 12 - c))]) + rng.standard_normal((len(y), 12))
    return [best] + [rng.standard_normal((len(y), 12)) for _ in range(k - 1)]


def _full_top1(feats: list[np.ndarray], y: np.ndarray) -> int:
    """The model a full ranking (every example, every model, the same metrics) puts first."""
    scores = [score_features(METRICS, {}, f, None, y)[0] for f in feats]
    _, crank = consensus({m: [s[m] for s in scores] for m in METRICS}, len(feats))
    return crank.index(1)


def test_a_clearly_best_model_is_decided_in_the_first_round_with_fewer_forward_passes():
    y = _labels()[stratified_order(_labels(), 0)]
    feats = _clear_pool(y)
    pool = _Pool(feats)
    r = run_rounds(pool.grow, ["best", "n1", "n2", "n3"], y, METRICS, [{}] * 4, AdaptiveSettings(seed=0))
    assert r.sizes == [64, 128, 256, 400]
    assert len(r.rounds) == 1 and r.rounds[0]["examples"] == 64  # one model left after the first round
    assert sorted(r.rounds[0]["dropped"]) == ["n1", "n2", "n3"]
    assert all(p >= 0.95 for p in r.rounds[0]["p_below_leader"].values())
    assert r.forward_passes == 4 * 64 < 4 * 400 and pool.held == [64] * 4  # counted: the rows each model ran
    assert r.order[0] == 0 == _full_top1(feats, y)  # the full ranking's top-1
    assert [r.models[i]["dropped"] for i in range(4)] == [False, True, True, True]
    assert "P(consensus below best's)" in r.rounds[0]["dropped"]["n1"]


def test_near_identical_models_run_to_the_end():
    y = _labels()[stratified_order(_labels(), 1)]
    rng = np.random.default_rng(1)
    base = rng.standard_normal((len(y), 12)) + np.hstack([np.eye(4)[y], np.zeros((len(y), 8))])
    feats = [base + 1e-3 * rng.standard_normal(base.shape) for _ in range(3)]
    r = run_rounds(_Pool(feats).grow, ["a", "b", "c"], y, METRICS, [{}] * 3, AdaptiveSettings(seed=1))
    assert [rd["examples"] for rd in r.rounds] == r.sizes == [64, 128, 256, 400]  # every round, to the end
    assert not any(rd["dropped"] for rd in r.rounds)
    assert r.forward_passes == 3 * 400  # no saving: nothing could be decided
    assert all(p < 0.95 for rd in r.rounds for p in rd["p_below_leader"].values())
    assert all(rd["resamples"] == 10 for rd in r.rounds[:-1])  # nothing droppable: decided after the pilot


def test_without_the_tie_rule_near_identical_models_would_look_ordered():
    """The rank-based consensus turns negligible but consistent differences into whole places; the tie rule is what
    keeps near-identical models together (the first test's pool, with tie=0, is below the leader more than half
    the time)."""
    y = _labels()[stratified_order(_labels(), 1)]
    rng = np.random.default_rng(1)
    base = rng.standard_normal((len(y), 12)) + np.hstack([np.eye(4)[y], np.zeros((len(y), 8))])
    feats = [base + 1e-3 * rng.standard_normal(base.shape) for _ in range(3)]
    tied = run_rounds(_Pool(feats).grow, ["a", "b", "c"], y, METRICS, [{}] * 3, AdaptiveSettings(seed=1))
    raw = run_rounds(_Pool(feats).grow, ["a", "b", "c"], y, METRICS, [{}] * 3,
                     AdaptiveSettings(seed=1, tie=0.0, resamples=20))
    p_tied = [p for p in tied.rounds[0]["p_below_leader"].values()]
    p_raw = [p for p in raw.rounds[0]["p_below_leader"].values()]
    assert max(p_raw) > 0.5 > max(p_tied)


@pytest.mark.parametrize("bad", [0.5, 0.3, 1.0, 1.2, -1, "0.9", True, float("nan")])
def test_confidence_is_validated(bad):
    with pytest.raises(TransferlabError, match="confidence must lie strictly between 0.5 and 1"):
        check_settings(AdaptiveSettings(confidence=bad))


@pytest.mark.parametrize(("field", "value", "match"), [
    ("resamples", 19, "resamples must be a whole number >= 20 at confidence 0.95"),
    ("resamples", 5, "resamples must be"), ("growth", 1.0, "growth must be a number > 1"),
    ("start", 1, "start must be a whole number"), ("tie", -0.1, "tie must be")])
def test_other_settings_are_validated(field, value, match):
    with pytest.raises(TransferlabError, match=match):
        check_settings(AdaptiveSettings(**{field: value}))
    assert check_settings(AdaptiveSettings(confidence=0.99, resamples=100)).confidence == 0.99


def test_the_order_makes_every_prefix_stratified_and_is_seeded():
    y = np.array([0] * 300 + [1] * 100 + [2] * 20)
    order = stratified_order(y, 3)
    assert sorted(order) == list(range(len(y)))
    assert np.array_equal(order, stratified_order(y, 3)) and not np.array_equal(order, stratified_order(y, 4))
    yo = y[order]
    assert sorted(yo[:6]) == [0, 0, 1, 1, 2, 2]  # every class's first two lead
    for n in (42, 100, 210):
        counts = np.bincount(yo[:n], minlength=3)
        assert np.all(np.abs(counts - n * np.bincount(y) / len(y)) <= 2.5), (n, counts)


def test_sizes_grow_from_four_per_class_to_the_whole_set():
    assert subset_sizes(2000, 10, 64, 2.0) == [64, 128, 256, 512, 1024, 2000]
    assert subset_sizes(900, 47, 64, 2.0) == [188, 376, 752, 900]  # at least 4 per class
    assert subset_sizes(50, 10, 64, 2.0) == [50]
    assert subset_sizes(300, 3, 64, 1.5) == [64, 96, 144, 216, 300]


def test_a_half_sample_has_half_of_every_class_and_no_duplicate():
    y = np.array([0] * 10 + [1] * 7 + [2] * 2)
    rows = half_sample(y, np.random.default_rng(0))
    assert len(set(rows.tolist())) == len(rows)
    assert np.bincount(y[rows]).tolist() == [5, 3, 2]


def test_dropped_models_rank_below_the_survivors_latest_dropped_first():
    r = Rounds(sizes=[64, 128, 256])
    r.models = {0: {"round": 3, "consensus": 0.6, "zoo_consensus": 0.4}, 1: {"round": 1, "consensus": 0.9},
                2: {"round": 2, "consensus": 0.1}, 3: {"round": 3, "consensus": 0.4, "zoo_consensus": 0.7},
                4: {"round": 1, "consensus": 0.95}}
    assert _final_order(r, [0, 3]) == [3, 0, 2, 4, 1]  # survivors by the zoo's consensus, not their last round's


def test_the_dropped_models_place_the_survivors_as_in_a_full_ranking():
    """Two survivors each first on one metric tie among themselves; over the whole zoo, B's lead on m2 (two models
    between them) outweighs A's on m1 (none between), as in a full ranking."""
    scores = {"a": {"m1": 10.0, "m2": 7.0}, "b": {"m1": 9.0, "m2": 10.0}, "c": {"m1": 8.9, "m2": 9.0},
              "d": {"m1": 8.8, "m2": 8.0}}
    r = Rounds(sizes=[64, 128])
    r.models = {i: {"scores": scores[k], "round": 2 if k in "ab" else 1, "consensus": 0.5}
                for i, k in enumerate("abcd")}
    among_two, _ = consensus({m: [scores["a"][m], scores["b"][m]] for m in ("m1", "m2")}, 2)
    assert among_two[0] == among_two[1]
    _zoo_consensus(r, ["m1", "m2"])
    assert r.models[1]["zoo_consensus"] > r.models[0]["zoo_consensus"]
    assert _final_order(r, [0, 1])[:2] == [1, 0]
    assert r.models[0]["zoo_ranks"] == {"m1": 1, "m2": 4}
