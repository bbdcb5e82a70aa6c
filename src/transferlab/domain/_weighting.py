"""Per-step ways of combining a domain objective's gradients, inside one step of the one training loop:

- ``sam_step``: sharpness-aware minimisation on the task loss (SDAT: Rangwani et al., ICML 2022; val-iisc/SDAT
  ``common/utils/sam.py`` and ``examples/cdan_sdat.py`` @ 33d7429, read, not copied): the gradient g of the source
  cross-entropy at w, the weights moved to w + ρ·g/‖g‖ (only the network's, not the adversary's), the whole loss's
  gradient taken there, the weights moved back; the optimiser then steps from w with that gradient. The
  discriminator's gradient is the plain one of the same pass (its weights are never perturbed).
- ``pareto_step``: Pareto weighting (ParetoDA: Lv et al., NeurIPS 2021; BIT-DA/ParetoDA ``examples/DANN+ParetoDA.py``
  and ``tools/epo_lp_dna.py`` @ 6691766): the objectives' gradients over the shared parameters (the backbone) are
  combined as m·Σ α_i g_i with α a Pareto-optimal point of the simplex guided by a target objective's gradient; the
  other parameters (head, discriminator) take the plain loss's gradient, as the reference does.

Both return a *surrogate* loss: its value is the plain loss's, its gradient the combined one, so the loop's backward,
clipping, scaling and optimiser step stay the loop's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np


def surrogate(value: Any, params: Sequence[Any], grads: Sequence[Any]) -> Any:
    """A scalar equal to ``value`` whose gradient with respect to ``params`` is ``grads`` (None: zero) and nothing
    else."""
    dot = sum(((p * g).sum() for p, g in zip(params, grads, strict=True) if g is not None), value.new_zeros(()))
    return value.detach() + dot - dot.detach()


def _grads(loss: Any, params: Sequence[Any], retain: bool = False) -> list[Any]:
    import torch

    return list(torch.autograd.grad(loss, list(params), retain_graph=retain, allow_unused=True))


def sam_step(task_loss: Callable[[], Any], full_loss: Callable[[], tuple[Any, dict[str, Any]]],
             perturbed: Sequence[Any], others: Sequence[Any], rho: float) -> tuple[Any, dict[str, Any]]:
    """One SAM step's loss: ``task_loss()`` at w gives g over ``perturbed``; w += ρ·g/(‖g‖ + 1e-12) (‖g‖ over all
    of ``perturbed``); ``full_loss()`` there gives the gradient of every parameter (``perturbed`` and ``others``);
    w is restored. The returned surrogate carries that gradient."""
    import torch

    g = _grads(task_loss(), perturbed)
    with torch.no_grad():
        norm = torch.norm(torch.stack([x.norm() for x in g if x is not None])) if any(x is not None for x in g) \
            else torch.zeros(())
        scale = rho / (float(norm) + 1e-12)
        eps = [None if x is None else x * scale for x in g]
        for p, e in zip(perturbed, eps, strict=True):
            if e is not None:
                p.add_(e)
    try:
        loss, logs = full_loss()
        params = [*perturbed, *others]
        grads = _grads(loss, params)
    finally:
        with torch.no_grad():
            for p, e in zip(perturbed, eps, strict=True):
                if e is not None:
                    p.sub_(e)
    return surrogate(loss, params, grads), {**logs, "sam_grad_norm": float(norm)}


def min_norm_weights(gram: np.ndarray) -> np.ndarray:
    """α on the simplex minimising ‖Σ α_i g_i‖² = αᵀ·gram·α (the min-norm point of the gradients' convex hull;
    ``gram`` = G·Gᵀ, m x m): exact, by solving the equality-constrained problem on every face (m is 2 or 3 here)
    and keeping the best feasible one. For two objectives α_1 = clip(((g2 − g1)·g2)/‖g1 − g2‖², 0, 1)."""
    c = np.asarray(gram, dtype=np.float64)
    m = len(c)
    best, best_value = np.full(m, 1.0 / m), np.inf
    for size in range(1, m + 1):
        for face in combinations(range(m), size):
            sub = c[np.ix_(face, face)]
            kkt = np.block([[2 * sub, np.ones((size, 1))], [np.ones((1, size)), np.zeros((1, 1))]])
            rhs = np.r_[np.zeros(size), 1.0]
            a = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if np.any(a < -1e-12) or abs(a.sum() - 1) > 1e-9:
                continue
            alpha = np.zeros(m)
            alpha[list(face)] = np.clip(a, 0, None)
            value = float(alpha @ c @ alpha)
            if value < best_value - 1e-15:
                best, best_value = alpha, value
    return best


def pareto_weights(gram: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """ParetoDA's guided direction (the balance step of its solver): α on the simplex maximising the alignment
    α·(G·g_guide) of d = Σ α_i g_i with the guide's gradient, subject to d not ascending any objective that the
    guide itself would ascend beyond what following the guide costs it ((G·d)_j ≥ (G·g_guide)_j where that is
    ≤ 0; the objective most aligned with the guide must descend, (G·d)_j ≥ 0; when the guide ascends all of them,
    all must descend). ``gram`` = G·Gᵀ, ``guide`` = G·g_guide.
    Infeasible or degenerate: the min-norm point (:func:`min_norm_weights`)."""
    from scipy.optimize import linprog

    c = np.asarray(gram, dtype=np.float64)
    ca = np.asarray(guide, dtype=np.float64)
    m = len(c)
    if np.any(ca > 0):
        rhs = ca.copy()
        rhs[ca > 0] = -np.inf  # objectives the guide already descends: unconstrained
        rhs[int(np.argmax(ca))] = 0.0  # the one most aligned with the guide must not ascend
    else:  # the guide ascends every objective: all must descend
        rhs = np.zeros(m)
    rows = np.isfinite(rhs)
    res = linprog(-ca, A_ub=-c[rows] if rows.any() else None, b_ub=-rhs[rows] if rows.any() else None,
                  A_eq=np.ones((1, m)), b_eq=[1.0], bounds=[(0, None)] * m, method="highs")
    if res.status != 0 or not np.all(np.isfinite(res.x)):
        return min_norm_weights(c)
    a = np.clip(res.x, 0, None)
    return a / a.sum()


def pareto_step(objectives: Sequence[Any], guide: Any, plain: Any, shared: Sequence[Any],
                rest: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
    """The surrogate of one Pareto-weighted step: over ``shared`` the gradient m·Σ α_i ∇objective_i with α from
    :func:`pareto_weights` (guided by ``guide``'s gradient); over ``rest`` the gradient of ``plain``."""
    import torch

    flat = []
    for loss in objectives:
        g = _grads(loss, shared, retain=True)
        flat.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                               for x, p in zip(g, shared, strict=True)]))
    gm = torch.stack(flat).detach().double()
    gv = torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                    for x, p in zip(_grads(guide, shared, retain=True), shared, strict=True)]).detach().double()
    alpha = pareto_weights((gm @ gm.T).cpu().numpy(), (gm @ gv).cpu().numpy())
    m = len(objectives)
    direction = (torch.as_tensor(alpha, dtype=gm.dtype, device=gm.device) @ gm) * m
    grads, i = [], 0
    for p in shared:
        grads.append(direction[i:i + p.numel()].reshape(p.shape).to(p.dtype))
        i += p.numel()
    grads += _grads(plain, rest) if rest else []
    logs = {f"pareto_alpha{j}": float(a) for j, a in enumerate(alpha)}
    return surrogate(plain, [*shared, *rest], grads), logs
