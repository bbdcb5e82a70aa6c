"""Gradient projection (issue 31): GPM's bases against the paper's criterion computed directly, its projection keeping
a linear layer's outputs on an old task's inputs unchanged while AdamW trains it on a new task, and CUBER's
descent-only part of a step inside an opened subspace."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from transferlab.continual._gpm import (
    GradientProjection,
    _descent_part,
    energy_basis,
    grow_basis,
    input_rows,
    project_out,
)


def _low_rank(n: int, d: int, rank: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g,
                                                                               dtype=torch.float64)


def test_the_bases_follow_gpms_energy_criterion_computed_directly():
    r1 = _low_rank(40, 12, 6, 0).numpy() + 0.05 * np.random.default_rng(1).normal(size=(40, 12))
    r2 = _low_rank(30, 12, 5, 2).numpy()
    m1 = energy_basis(torch.tensor(r1), 0.9).numpy()
    s = np.linalg.svd(r1, compute_uv=False) ** 2
    k = int(np.argmax(np.cumsum(s) / s.sum() >= 0.9)) + 1  # the paper's k for the first task
    assert m1.shape == (12, k)
    assert np.allclose(m1.T @ m1, np.eye(k), atol=1e-10)
    m2 = grow_basis(torch.tensor(m1), torch.tensor(r2), 0.95).numpy()
    # fewer rows than dimensions (a thin SVD) and more (the d x d moment): the same span
    r3 = torch.tensor(r2[:8])
    thin, wide = grow_basis(torch.tensor(m1), r3, 0.95), grow_basis(torch.tensor(m1), torch.cat([r3, r3]), 0.95)
    assert thin.shape == wide.shape and torch.allclose(thin @ thin.T, wide @ wide.T, atol=1e-8)
    # the paper's rule for a later task: the part of R outside M, its leading directions added until
    # ||M^T R||^2 + sum(sigma_hat^2) >= eps ||R||^2
    total, inside = (r2 ** 2).sum(), ((m1.T @ r2.T) ** 2).sum()
    s_hat = np.linalg.svd(r2 - r2 @ m1 @ m1.T, compute_uv=False) ** 2
    k2 = 0 if inside >= 0.95 * total else int(np.argmax(inside + np.cumsum(s_hat) >= 0.95 * total)) + 1
    assert m2.shape == (12, k + k2) and np.allclose(m2.T @ m2, np.eye(k + k2), atol=1e-10)
    assert np.allclose(m2 @ m2.T @ m1, m1, atol=1e-10)  # the old directions are kept


def test_gpm_keeps_a_linear_layers_outputs_on_old_inputs_while_adamw_trains_it():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8, bias=False)
    backbone = torch.nn.Sequential(layer)
    old = _low_rank(24, 16, 6, 3).float()  # the old task's inputs span 6 of 16 dimensions
    s = GradientProjection(threshold=1.0, threshold_step=0.0, n_examples=24, backward=False)
    run = SimpleNamespace(modules={"backbone": backbone})
    s.install(run)
    s.union["0"] = grow_basis(None, input_rows(backbone, s.layers, [old[:12], old[12:]])["0"], 1.0)
    assert s.union["0"].shape[1] == 6
    s.blocked = {"0": s.union["0"]}
    s._prev = {"0": layer.weight.detach().clone()}
    before = layer(old).detach()
    w0 = layer.weight.detach().clone()
    opt = torch.optim.AdamW(layer.parameters(), lr=0.05, weight_decay=0.1)  # per-coordinate steps and decay
    new_x, new_y = torch.randn(64, 16), torch.randn(64, 8)
    hook = layer.weight.register_hook(lambda g: project_out(g, s.blocked["0"]))
    for _ in range(50):
        opt.zero_grad()
        torch.nn.functional.mse_loss(layer(new_x), new_y).backward()
        opt.step()
        s.after_step(run, 1, run.modules)
    hook.remove()
    assert (layer.weight - w0).abs().max() > 0.1  # it learned
    assert (layer(old).detach() - before).abs().max() <= 1e-6


def test_cuber_keeps_of_a_step_only_its_descent_along_the_old_gradient():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    down = torch.tensor([[-0.5, 0.3], [0.1, -1.0]])  # <step, g> = -0.5 - 2 < 0: it descends
    part = _descent_part(down, g)
    assert torch.allclose(part, -(2.5 / 5.0) * g) and float((part * g).sum()) < 0
    assert torch.equal(_descent_part(-down, g), torch.zeros_like(g))  # a climbing step keeps nothing


def test_options_are_checked():
    from transferlab.continual import STRATEGIES
    from transferlab.errors import TransferlabError

    for name, bad in (("gpm", {"threshold": 0.0}), ("gpm", {"threshold_step": -1.0}), ("cuber", {"epsilon": 2.0}),
                      ("gpm", {"n_examples": 0}), ("gpm", {"sgd_lr": 0.0}), ("cuber", {"momentum": 1.0})):
        with pytest.raises(TransferlabError):
            STRATEGIES.get(name)(**bad)
    for name in ("gpm", "cuber"):  # momentum without sgd_lr was accepted and ignored (AdamW trains those layers)
        with pytest.raises(TransferlabError, match="momentum 0.9 is the SGD step's: set sgd_lr too"):
            STRATEGIES.get(name)(momentum=0.9)
        STRATEGIES.get(name)(sgd_lr=0.01, momentum=0.9)


def _old_task_layer(seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, GradientProjection, SimpleNamespace]:
    """A 16 -> 8 linear layer whose old task's inputs span 6 of its 16 input dimensions, that span blocked."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(16, 8, bias=False)
    old = _low_rank(24, 16, 6, 3).float()
    s = GradientProjection(threshold=1.0, threshold_step=0.0, n_examples=24, backward=False, sgd_lr=0.1,
                           momentum=0.9)
    run = SimpleNamespace(modules={"backbone": torch.nn.Sequential(layer)})
    s.install(run)
    s.blocked = {"0": grow_basis(None, input_rows(run.modules["backbone"], s.layers, [old])["0"], 1.0)}
    s._prev = {"0": layer.weight.detach().clone()}
    return layer, old, s, run


def test_adamw_on_a_projected_gradient_leaves_the_span_and_sgd_with_momentum_does_not():
    """Issue 31's hypothesis, on the gradient projection alone (no projection of the step): AdamW's per-coordinate
    scaling and decay move the old task's outputs; SGD with momentum, whose steps are sums of projected gradients,
    keeps them to 1e-6. GPM therefore projects the step as well (``after_step``), whatever the optimiser."""
    for opt_of, keeps in ((lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.1), False),
                          (lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9), True)):
        layer, old, s, _ = _old_task_layer()
        before = layer(old).detach()
        opt = opt_of(layer.parameters())
        x, y = torch.randn(64, 16), torch.randn(64, 8)
        hook = layer.weight.register_hook(lambda g, m=s.blocked["0"]: project_out(g, m))
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(layer(x), y).backward()
            opt.step()
        hook.remove()
        drift = float((layer(old).detach() - before).abs().max())
        assert (drift <= 1e-6) == keeps, drift


def test_the_strategys_own_sgd_step_is_the_projected_gradient_with_momentum():
    layer, old, s, run = _old_task_layer()
    heads = {"0": torch.nn.Linear(8, 2)}
    ps = s.trainable(SimpleNamespace(stream=SimpleNamespace(kind="task")), 0,
                     {"backbone": run.modules["backbone"], "heads": heads})
    assert ps and all(p is not layer.weight for p in ps)  # the loop's AdamW steps the head, not the layer
    m = s.blocked["0"].numpy()
    before, w0 = layer(old).detach(), layer.weight.detach().double().numpy()
    g1, g2 = np.random.default_rng(0).normal(size=(2, 8, 16))
    for g in (g1, g2):  # gradients as the loop leaves them: projected by the hook
        layer.weight.grad = torch.tensor(g - g @ m @ m.T, dtype=torch.float32)
        s.after_step(run, 1, run.modules)
        assert layer.weight.grad is None
    p1, p2 = g1 - g1 @ m @ m.T, g2 - g2 @ m @ m.T
    want = w0 - 0.1 * p1 - 0.1 * (0.9 * p1 + p2)  # SGD with momentum 0.9 at lr 0.1, by hand
    assert np.allclose(layer.weight.detach().double().numpy(), want, atol=1e-5)
    assert (layer(old).detach() - before).abs().max() <= 1e-6


def test_sgd_lr_is_refused_in_a_distributed_run(monkeypatch):
    """``sgd_lr`` steps the projected weights in ``after_step``, outside the loop: under torchrun (or devices=N) their
    gradients would not be averaged across the processes (H8's review). The loop's AdamW stays allowed there."""
    from transferlab.continual import STRATEGIES
    from transferlab.errors import TransferlabError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    for name in ("gpm", "cuber"):
        run = SimpleNamespace(modules={"backbone": torch.nn.Sequential(torch.nn.Linear(4, 3))})
        with pytest.raises(TransferlabError, match="sgd_lr steps the projected layers outside the training loop"):
            STRATEGIES.get(name)(sgd_lr=0.01).install(run)
        STRATEGIES.get(name)().install(run)
