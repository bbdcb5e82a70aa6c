"""Ensemble selection: CKA similarity, the quality-diversity objective, greedy picks."""

import itertools

import numpy as np
import pytest

from transferlab.errors import TransferlabError
from transferlab.rank._ensemble import linear_cka_matrix, select_ensemble


def test_linear_cka_is_invariant_to_rotation_and_scale_and_low_for_unrelated():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((150, 12))
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    s = linear_cka_matrix([a, 3.0 * a @ q, rng.standard_normal((150, 40))])
    assert s[0, 1] == pytest.approx(1.0)
    assert s[0, 2] < 0.3
    assert np.all(np.linalg.eigvalsh(s) > -1e-10)  # PSD: the objective is submodular


def test_a_duplicate_loses_to_a_complementary_model_of_equal_quality():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((200, 16))
    feats = {"a": a, "a_copy": a @ np.diag(rng.uniform(0.5, 2, 16)), "b": rng.standard_normal((200, 16))}
    quality = {"a": 0.9, "a_copy": 0.9, "b": 0.9}
    choice = select_ensemble(feats, quality, 2)
    assert choice.models[0] in ("a", "a_copy", "b") and set(choice.models) != {"a", "a_copy"}
    # but a much better duplicate still wins over a poor complement: quality counts
    assert select_ensemble(feats, {"a": 0.9, "a_copy": 0.9, "b": 0.1}, 2).models == ["a", "a_copy"]


def test_greedy_gains_diminish_and_match_the_objective():
    rng = np.random.default_rng(2)
    feats = {f"m{i}": rng.standard_normal((80, 5)) @ rng.standard_normal((5, 8)) + 0.3 * rng.standard_normal((80, 8))
             for i in range(6)}
    quality = {m: float(rng.uniform(0.2, 1.0)) for m in feats}
    c = select_ensemble(feats, quality, 4)
    assert all(g1 >= g2 - 1e-12 for g1, g2 in itertools.pairwise(c.gains))  # submodular: diminishing returns
    names = list(feats)
    s = linear_cka_matrix([feats[m] for m in names])
    q = np.array([quality[m] for m in names])
    big_l = c.theta * q[:, None] * s * q[None, :]
    idx = [names.index(m) for m in c.models]
    assert np.linalg.slogdet(np.eye(4) + big_l[np.ix_(idx, idx)])[1] == pytest.approx(sum(c.gains))
    best = max(itertools.combinations(range(6), 4),
               key=lambda t: np.linalg.slogdet(np.eye(4) + big_l[np.ix_(t, t)])[1])
    best_val = np.linalg.slogdet(np.eye(4) + big_l[np.ix_(best, best)])[1]
    assert sum(c.gains) >= (1 - 1 / np.e) * best_val  # the greedy guarantee


def test_bad_ensemble_sizes():
    f = {"a": np.ones((5, 2)), "b": np.zeros((5, 2))}
    with pytest.raises(TransferlabError, match="from 2 scored models"):
        select_ensemble(f, {"a": 1, "b": 1}, 3)
    with pytest.raises(TransferlabError, match="at least 1"):
        select_ensemble(f, {"a": 1, "b": 1}, 0)


def test_rank_with_ensemble(tiny_model_ref, tmp_path):
    from transferlab.data import load_dataset
    from transferlab.rank import rank

    ds = load_dataset("builtin:digits").stratified_sample(120)
    r = rank(ds, [tiny_model_ref, "builtin:pixels", "builtin:random_efficientnet_lite0"], "logme,knn",
             image_size=32, ensemble=2)
    assert len(r.ensemble["models"]) == 2 and len(set(r.ensemble["models"])) == 2
    assert r.ensemble["models"][0] == r.models[0].model  # the first pick is the best-quality model
    paths = r.save(tmp_path)
    assert "Ensemble" in paths["html"].read_text()
