"""SAM (SDAT) and Pareto weighting (ParetoDA) against hand computations: one SAM step on a quadratic whose gradients
are known in closed form, the min-norm weights against the two-objective closed form and a grid over the simplex,
the guided weights on a case solved by hand, and both options end to end on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.domain._weighting import min_norm_weights, pareto_weights, sam_step
from transferlab.errors import TransferlabError


def test_one_sam_step_equals_the_hand_computation():
    # task(w) = ½‖w − a‖² (gradient w − a); full(w, v) = task(w) + v·w (gradients w − a + v and w)
    a = torch.tensor([1.0, -2.0, 0.5])
    w0, v0, rho, lr = torch.tensor([0.3, 0.4, -1.0]), torch.tensor([0.2, -0.1, 0.3]), 0.02, 0.1
    w, v = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(v0.clone())
    loss, logs = sam_step(lambda: 0.5 * ((w - a) ** 2).sum(), lambda: (0.5 * ((w - a) ** 2).sum() + v @ w, {}),
                          [w], [v], rho)
    assert torch.equal(w.detach(), w0)  # the weights are back at w before the optimiser steps
    g = (w0 - a).numpy()
    e = rho * g / np.linalg.norm(g)  # the perturbation, by hand
    wp = w0.numpy() + e
    assert float(loss.detach()) == pytest.approx(0.5 * ((wp - a.numpy()) ** 2).sum() + v0.numpy() @ wp, rel=1e-6)
    assert logs["sam_grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-6)
    opt = torch.optim.SGD([w, v], lr=lr)
    loss.backward()
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), w0.numpy() - lr * (wp - a.numpy() + v0.numpy()), rtol=1e-6)
    np.testing.assert_allclose(v.detach().numpy(), v0.numpy() - lr * wp, rtol=1e-6)  # plain: no perturbation


@pytest.mark.parametrize("seed", range(5))
def test_two_objective_min_norm_weights_match_the_closed_form(seed):
    rng = np.random.default_rng(seed)
    g1, g2 = rng.normal(size=7), rng.normal(size=7)
    if seed == 0:
        g2 = 3 * g1  # collinear, same direction: all weight on the shorter one
    g = np.stack([g1, g2])
    alpha = min_norm_weights(g @ g.T)
    closed = np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0, 1)
    assert alpha[0] == pytest.approx(closed, abs=1e-9) and alpha.sum() == pytest.approx(1)


def test_three_objective_min_norm_weights_beat_every_point_of_a_simplex_grid():
    g = np.random.default_rng(3).normal(size=(3, 5))
    c = g @ g.T
    alpha = min_norm_weights(c)
    grid = [(i / 60, j / 60, 1 - (i + j) / 60) for i in range(61) for j in range(61 - i)]
    assert alpha @ c @ alpha <= min(np.array(x) @ c @ np.array(x) for x in grid) + 1e-12


def test_guided_pareto_weights_by_hand():
    # g1 = (1, 0), g2 = (−1, 1), guide (0, 1): G·guide = (0, 1); objective 2 is the most aligned (must descend),
    # objective 1 may not ascend beyond 0: (G Gᵀ α)_1 = α1 − α2 >= 0; maximising α2 gives α = (½, ½)
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    alpha = pareto_weights(g @ g.T, g @ np.array([0.0, 1.0]))
    np.testing.assert_allclose(alpha, [0.5, 0.5], atol=1e-9)
    # a guide that ascends both objectives: both must descend; the best aligned such α
    alpha = pareto_weights(g @ g.T, g @ np.array([-1.0, -1.0]))
    d = alpha @ g
    assert np.all(g @ d >= -1e-9)


@pytest.fixture(scope="module")
def shift():
    from transferlab.data import load_dataset

    return (load_dataset("builtin:digits").stratified_sample(60, seed=0),
            load_dataset("builtin:digits-m").stratified_sample(32, seed=0))


def test_sam_and_pareto_train_end_to_end(shift, tiny_model_ref):
    from transferlab.domain import adapt

    src, tgt = shift
    kw = dict(epochs=1, image_size=32, batch_size=8, bottleneck=8, select="source_val", target_test=None)
    r = adapt(src, tgt, tiny_model_ref, "dann", sam=0.02, hidden=16, **kw)
    row = r.history[0]
    assert row["train_sam_grad_norm"] > 0 and np.isfinite(row["train_loss"]) and r.metrics["sam"] == 0.02
    r = adapt(src, tgt, tiny_model_ref, "dann", weighting="pareto", hidden=16, **kw)
    row = r.history[0]
    alphas = [row[f"train_pareto_alpha{i}"] for i in range(3)]
    assert sum(alphas) == pytest.approx(1, abs=1e-6) and min(alphas) >= 0
    with pytest.raises(TransferlabError, match="adversarial"):
        adapt(src, tgt, tiny_model_ref, "mcc", sam=0.02, **kw)
    with pytest.raises(TransferlabError, match="unknown weighting"):
        adapt(src, tgt, tiny_model_ref, "dann", weighting="magic", **kw)
