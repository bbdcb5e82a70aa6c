"""The label-free selectors against closed forms: Transfer Score's three terms, entropy, IM, SND, DEV."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transferlab.domain._selectors import (
    SELECTORS,
    Evidence,
    hopkins,
    information_maximisation,
    uniformity,
)


def test_uniformity_is_zero_for_a_regular_simplex_and_grows_with_bias():
    k = 5
    simplex = np.eye(k) - 1.0 / k  # the simplex ETF: every pair of class weights at arccos(-1/(K-1))
    assert uniformity(simplex) == pytest.approx(0.0, abs=1e-12)
    biased = simplex.copy()
    biased[1] = biased[0] + 0.1  # two classes nearly the same direction
    assert uniformity(biased) > 0.1
    orthogonal = np.eye(k)  # 90 degrees apart instead of arccos(-1/4) = 104.5 degrees
    assert uniformity(orthogonal) == pytest.approx((math.pi / 2 - math.acos(-0.25)) ** 2)


def test_information_maximisation_bounds():
    k = 4
    confident_balanced = np.repeat(np.eye(k), 10, axis=0)
    assert information_maximisation(confident_balanced) == pytest.approx(-math.log(k), abs=1e-3)
    assert information_maximisation(np.full((40, k), 1 / k)) == pytest.approx(0.0, abs=1e-6)
    one_class = np.tile(np.eye(k)[0], (40, 1))
    assert information_maximisation(one_class) == pytest.approx(0.0, abs=1e-3)  # certain but collapsed: no credit


def test_hopkins_is_half_on_uniform_points_and_near_one_on_separated_blobs():
    rng = np.random.default_rng(10)  # not the selector's seed: its probe points would be the data's first points
    uniform = rng.uniform(0, 1, (4000, 2))
    assert hopkins(uniform, seed=0) == pytest.approx(0.5, abs=0.06)
    blobs = np.concatenate([rng.normal(c, 0.01, (1000, 2)) for c in ((0, 0), (1, 0), (0, 1), (1, 1))])
    assert hopkins(blobs, seed=0) > 0.9
    assert hopkins(blobs, seed=0) == hopkins(blobs, seed=0)  # seeded


def test_transfer_score_is_higher_for_a_clustered_confident_balanced_unbiased_checkpoint():
    rng = np.random.default_rng(1)
    k = 4
    centres = np.eye(k) * 5
    y = np.repeat(np.arange(k), 50)
    good = Evidence(probs_t=np.eye(k)[y] * 0.97 + 0.01, features_t=centres[y] + rng.normal(0, 0.1, (200, k)),
                    classifier=np.eye(k) - 1.0 / k)
    bad = Evidence(probs_t=np.full((200, k), 1 / k), features_t=rng.uniform(0, 5, (200, k)),
                   classifier=np.eye(k) + np.array([1.0, 0, 0, 0]))
    ts = SELECTORS.get("transfer_score")
    g, b = ts(good), ts(bad)
    assert g["score"] == pytest.approx(g["hopkins"] - g["im"] / math.log(k) - g["uniformity"])
    assert g["score"] > b["score"] + 1.0
    assert g["hopkins"] > 0.9 and g["uniformity"] < 1e-9 and b["im"] == pytest.approx(0.0, abs=1e-6)


def test_entropy_im_snd_and_source_val():
    k = 3
    sure = Evidence(probs_t=np.repeat(np.eye(k), 5, axis=0), features_t=np.zeros((15, 2)), classifier=np.eye(k),
                    probs_s=np.eye(k)[[0, 1, 2, 0]], labels_s=np.array([0, 1, 1, 0]))
    unsure = Evidence(probs_t=np.full((15, k), 1 / k), features_t=np.zeros((15, 2)), classifier=np.eye(k))
    assert SELECTORS.get("entropy")(sure)["score"] > SELECTORS.get("entropy")(unsure)["score"]
    assert SELECTORS.get("im")(sure)["score"] == pytest.approx(math.log(k), abs=1e-3)
    # SND: identical predictions within a class give each example 4 equally near neighbours out of 14
    assert SELECTORS.get("snd")(sure)["score"] == pytest.approx(math.log(4), abs=1e-3)
    assert SELECTORS.get("source_val")(sure)["score"] == 0.75
    assert math.isnan(SELECTORS.get("source_val")(unsure)["score"])


def test_dev_without_a_shift_is_the_plain_source_loss():
    """With source and target from one distribution the importance weights are about 1 and DEV is about the mean
    source hold-out cross-entropy."""
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1, (400, 3))
    labels = rng.integers(0, 2, 200)
    probs = np.where(np.eye(2)[labels] == 1, 0.8, 0.2)
    ev = Evidence(probs_t=np.full((200, 2), 0.5), features_t=z[200:], classifier=np.eye(2), probs_s=probs,
                  labels_s=labels, features_s=z[:200])
    out = SELECTORS.get("dev")(ev)
    assert out["score"] == pytest.approx(math.log(0.8 + 1e-5), abs=0.03)


def test_snd_in_row_blocks_equals_the_whole_matrix():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), 50)
    ev = Evidence(probs_t=p, features_t=np.zeros((50, 2)), classifier=np.eye(4))
    q = p / np.linalg.norm(p, axis=1, keepdims=True)
    s = q @ q.T / 0.05
    np.fill_diagonal(s, -np.inf)
    e = np.exp(s - s.max(1, keepdims=True))
    e /= e.sum(1, keepdims=True)
    whole = float(np.mean(-(e * np.log(e + 1e-5)).sum(1)))
    snd = SELECTORS.get("snd")
    assert snd(ev)["score"] == pytest.approx(whole, rel=1e-12)
    assert snd(ev, block=7)["score"] == pytest.approx(whole, rel=1e-12)
