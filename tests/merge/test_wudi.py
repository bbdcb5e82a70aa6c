"""WUDI (Cheng et al., ICML 2025): the loss falls below task arithmetic's, the hand-worked minimisers are reached,
and the steps equal Adam on the loss as fusion_bench writes it (tanganke/fusion_bench 54c9e8c,
fusion_bench/method/wudi/wudi.py: autograd through sum_i ||(tau_m - tau_i) tau_i^T||^2 / ||tau_i||^2)."""

from __future__ import annotations

import pytest


def _reference_adam(taus, steps: int, lr: float):  # the reference's loop, written out with autograd
    import torch

    tvs = torch.stack(taus)
    merged = torch.nn.Parameter(tvs.sum(0).clone())
    opt = torch.optim.Adam([merged], lr=lr, weight_decay=0)
    l2 = torch.square(torch.norm(tvs.reshape(tvs.shape[0], -1), p=2, dim=-1))
    for _ in range(steps):
        loss = torch.sum(torch.square(torch.matmul(merged.unsqueeze(0) - tvs, tvs.transpose(1, 2)))
                         / l2.unsqueeze(-1).unsqueeze(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return merged.detach()


@pytest.mark.parametrize("shape", [(6, 5), (3, 40)])  # tall: the [in, in] gradient; wide: the [out, out] one
def test_steps_equal_adam_on_the_reference_loss(shape: tuple[int, int]) -> None:
    import torch

    from transferlab.merge._wudi import wudi_matrix

    g = torch.Generator().manual_seed(0)
    taus = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]
    got = wudi_matrix(taus, steps=20, lr=1e-2)
    assert torch.allclose(got, _reference_adam(taus, 20, 1e-2), atol=1e-10)
    assert not torch.allclose(got, torch.stack(taus).sum(0), atol=1e-3)  # it moved


def test_loss_at_most_task_arithmetic_and_the_closed_form_reached() -> None:
    import torch

    from transferlab.merge._wudi import wudi_loss, wudi_matrix

    g = torch.Generator().manual_seed(1)
    taus = [torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    ta = torch.stack(taus).sum(0)
    default = wudi_matrix(taus)  # the reference's lr 1e-5, 400 steps: a small move, downhill
    assert wudi_loss(default, taus) < wudi_loss(ta, taus)
    # zero gradient: tau_m A = B, A = sum tau_i^T tau_i / |tau_i|^2, B = sum tau_i tau_i^T tau_i / |tau_i|^2
    a = sum(t.T @ t / (t * t).sum() for t in taus)
    b = sum(t @ t.T @ t / (t * t).sum() for t in taus)
    best = b @ torch.linalg.inv(a)
    got = wudi_matrix(taus, steps=1500, lr=1e-2)
    assert wudi_loss(got, taus) <= wudi_loss(best, taus) + 1e-3 < wudi_loss(ta, taus)
    assert torch.allclose(got, best, atol=2e-2)


def test_hand_worked_minimisers() -> None:
    """Orthogonal task vectors in one input direction: tau_1 = [[1,0],[0,0]], tau_2 = [[0,0],[1,0]] (both read input 1)
    interfere there; the loss ||(m - t1) e1||^2 + ||(m - t2) e1||^2 is least at m e1 = (1/2, 1/2), and m e2 keeps the
    start's 0: m = [[.5, 0], [.5, 0]], the average, not the sum. Orthogonal input directions (tau_1 reads input 1,
    tau_2 input 2): the sum has zero loss and stays."""
    import torch

    from transferlab.merge._wudi import wudi_loss, wudi_matrix

    t1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    t2 = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    got = wudi_matrix([t1, t2], steps=1500, lr=2e-3)
    assert torch.allclose(got, torch.tensor([[0.5, 0.0], [0.5, 0.0]], dtype=torch.float64), atol=5e-3)
    assert abs(wudi_loss(got, [t1, t2]) - 1.0) < 1e-3  # |c - t_i e1|^2 = 2 (1/2)^2 per task at the minimum
    s2 = torch.tensor([[0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    assert torch.equal(wudi_matrix([t1, s2], steps=100, lr=1e-2), t1 + s2)


def test_merge_wudi_on_a_state_dict() -> None:
    """Through merge(): weight matrices (and conv kernels, as [out, in*k*k]) by WUDI, 1-D tensors by the mean of the
    task vectors (the reference); conv=False leaves kernels to the mean as well."""
    import torch

    from transferlab.merge import merge
    from transferlab.merge._wudi import wudi_matrix

    g = torch.Generator().manual_seed(2)
    base = {"w": torch.randn(5, 3, generator=g), "b": torch.randn(5, generator=g),
            "k": torch.randn(4, 2, 3, 3, generator=g)}
    fts = [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()} for _ in range(2)]
    out = merge("wudi", base, fts, steps=50, lr=1e-3)
    taus = {k: [ft[k] - base[k] for ft in fts] for k in base}
    assert torch.allclose(out["w"], base["w"] + wudi_matrix(taus["w"], steps=50, lr=1e-3), atol=1e-6)
    assert torch.allclose(out["b"], base["b"] + (taus["b"][0] + taus["b"][1]) / 2, atol=1e-6)
    k = wudi_matrix([t.reshape(4, -1) for t in taus["k"]], steps=50, lr=1e-3).reshape(4, 2, 3, 3)
    assert torch.allclose(out["k"], base["k"] + k, atol=1e-6)
    plain = merge("wudi", base, fts, steps=50, lr=1e-3, conv=False)
    assert torch.allclose(plain["k"], base["k"] + (taus["k"][0] + taus["k"][1]) / 2, atol=1e-6)
