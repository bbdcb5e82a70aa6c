"""RegMean++ on a tiny 2-layer network equals a NumPy computation of the procedure (tanganke/fusion_bench 54c9e8c,
fusion_bench/method/regmean_plusplus/regmean_plusplus.py: layer 2's Gram matrices on the activations of the *merged*
layer 1, each task's own inputs; off-diagonal entries x alpha; biases averaged), differs from plain RegMean there, and
returns the single task's weights when given one task."""

from __future__ import annotations

import re

import numpy as np
import pytest


def _nets_and_batches(n_tasks: int):
    import torch

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
            for _ in range(n_tasks)]
    g = torch.Generator().manual_seed(1)
    batches = [[(torch.randn(6, 4, generator=g, dtype=torch.float64) + t, None) for _ in range(2)]
               for t in range(n_tasks)]
    return nets, batches


def _np_regmean(ws, grams, alpha):
    gs = [alpha * g + (1 - alpha) * np.diag(np.diag(g)) for g in grams]
    return np.linalg.solve(sum(gs), sum(g @ w.T for g, w in zip(gs, ws, strict=True))).T


def test_regmean_pp_equals_a_numpy_computation_of_the_procedure() -> None:
    import torch

    from transferlab.merge._regmean_pp import regmean_pp_merge

    alpha = 0.95
    nets, batches = _nets_and_batches(2)
    p = [{k: v.detach().numpy().copy() for k, v in n.state_dict().items()} for n in nets]
    xs = [np.concatenate([b[0].numpy() for b in bs]) for bs in batches]
    # layer 1 ("0"): the same inputs for both (the data itself), RegMean; its bias averaged
    w1 = _np_regmean([q["0.weight"] for q in p], [x.T @ x / len(x) for x in xs], alpha)
    b1 = (p[0]["0.bias"] + p[1]["0.bias"]) / 2
    # layer 2 ("2"): each task's data through the MERGED layer 1
    hs = [np.maximum(x @ w1.T + b1, 0) for x in xs]
    w2 = _np_regmean([q["2.weight"] for q in p], [h.T @ h / len(h) for h in hs], alpha)
    keys = ["0.weight", "0.bias", "2.weight", "2.bias"]
    got = regmean_pp_merge(nets, batches, keys, alpha)
    np.testing.assert_allclose(got["0.weight"].numpy(), w1, rtol=1e-5, atol=1e-6)  # the solver's 1e-8 ridge
    np.testing.assert_allclose(got["0.bias"].numpy(), b1, atol=1e-12)
    np.testing.assert_allclose(got["2.weight"].numpy(), w2, rtol=1e-5, atol=1e-6)  # the solver's 1e-8 ridge
    np.testing.assert_allclose(got["2.bias"].numpy(), (p[0]["2.bias"] + p[1]["2.bias"]) / 2, atol=1e-12)
    # plain RegMean: layer 2's Gram matrices on each task's OWN layer 1 -- another answer
    own = [np.maximum(x @ q["0.weight"].T + q["0.bias"], 0) for x, q in zip(xs, p, strict=True)]
    plain = _np_regmean([q["2.weight"] for q in p], [h.T @ h / len(h) for h in own], alpha)
    assert np.abs(plain - w2).max() > 1e-3
    for n in nets:  # the nets now hold the merged network
        assert torch.allclose(n.state_dict()["2.weight"], got["2.weight"])


def test_regmean_pp_with_one_task_returns_its_weights() -> None:
    from transferlab.merge._regmean_pp import regmean_pp_merge

    nets, batches = _nets_and_batches(1)
    own = {k: v.detach().clone() for k, v in nets[0].state_dict().items()}
    got = regmean_pp_merge(nets, batches, list(own), 0.95)
    for k, v in own.items():
        np.testing.assert_allclose(got[k].numpy(), v.numpy(), atol=1e-9)


def test_layers_are_blocks_in_forward_order() -> None:
    from transferlab.merge._regmean_pp import block_of

    assert block_of("blocks.3.2.conv_pw") == "blocks.3.2"
    assert block_of("encoder.layer.1.attention.self.query") == "encoder.layer.1"
    assert block_of("conv_head") == "conv_head" and block_of("0") == "0"


@pytest.mark.parametrize("name", ["regmean", "regmean_pp"])
@pytest.mark.parametrize(("option", "value", "message"), [("alpha", 1.5, "alpha must lie in [0, 1]"),
                                                          ("examples", 0, "examples must be >= 1")])
def test_gram_merges_refuse_bad_options_with_one_clear_error(name, option, value, message):
    from transferlab.errors import TransferlabError
    from transferlab.merge._registry import MERGE_METHODS

    with pytest.raises(TransferlabError, match=rf"^{name}: {re.escape(message)}"):
        MERGE_METHODS.get(name)(**{option: value})
