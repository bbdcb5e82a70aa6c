"""WUDI merging (Cheng et al., "Whoever Started the Interference Should End It: Guiding Data-Free Model Merging via
Task Vectors", ICML 2025): data-free. Per weight matrix the task vectors stand in for the inputs each task sees (a
fine-tuned layer's update lies in the span of its inputs), and the merged task vector ``tau_m`` minimises the
interference it causes on them,

    L(tau_m) = sum_i ||(tau_m - tau_i) tau_i^T||_F^2 / ||tau_i||_F^2,

by Adam from ``tau_m = sum_i tau_i`` (task arithmetic at ``lam = 1``); the merged weight is ``base + tau_m``. Every
other tensor gets the mean of the task vectors.

Checked against tanganke/fusion_bench @ 54c9e8c, ``fusion_bench/method/wudi/wudi.py`` (``wudi_merging``) and
``config/method/wudi/wudi.yaml``: the loss above (each task's term divided by its squared Frobenius norm), Adam
(lr 1e-5, no weight decay, torch's betas and eps), 400 steps, the sum as the start, 2-D tensors only, the mean of the
task vectors elsewhere. Our own code: the gradient is formed in closed form, ``2 (tau_m A - B)`` with
``A = sum_i tau_i^T tau_i / ||tau_i||^2`` and ``B = sum_i tau_i tau_i^T tau_i / ||tau_i||^2`` computed once, so a step
costs one ``[out, in] x [in, in]`` product instead of the reference's ``T`` products through autograd (the same
gradient). ``conv=True`` (ours, the default) also treats convolution kernels ``[out, in, kh, kw]`` as matrices
``[out, in*kh*kw]`` (a convolution is a linear map of its unfolded patches); ``conv=False`` is the reference (2-D
tensors only). The reference's lr is absolute: Adam moves each entry by about ``lr`` per step, so 400 steps of 1e-5
move an entry by at most 4e-3, which suits CLIP's task vectors; ``lr`` and ``steps`` are options.

The minimiser in closed form (the gradient set to zero) is ``tau_m A = B``: where ``A`` is invertible,
``tau_m = B A^-1`` (RegMean's solution with the task vectors' Gram matrices in place of the inputs'); gradient descent
leaves the start's component outside ``A``'s range unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import TransferlabError
from ._arith import Method, compute_dtype
from ._registry import MERGE_METHODS


def wudi_loss(merged: Any, taus: list[Any]) -> float:
    """``sum_i ||(merged - tau_i) tau_i^T||^2 / ||tau_i||^2`` of 2-D tensors (zero task vectors left out)."""
    total = 0.0
    for t in taus:
        n2 = float((t * t).sum())
        if n2 > 0:
            total += float((((merged - t) @ t.T) ** 2).sum()) / n2
    return total


def wudi_matrix(taus: list[Any], *, steps: int = 400, lr: float = 1e-5) -> Any:
    """The merged task vector of one weight matrix (``taus``: the tasks' ``[out, in]`` task vectors, float32 or
    float64): Adam on the WUDI loss from their sum, ``steps`` steps of ``lr``."""
    import torch

    start = torch.stack(taus).sum(0)
    taus = [t for t in taus if bool((t != 0).any())]  # a zero task vector adds nothing to the loss
    if not taus or steps == 0:
        return start
    n, m = start.shape
    wide = m > 2 * len(taus) * n  # the gradient through [out, out] products when cheaper than through [in, in]
    a = b = None
    if not wide:
        a = sum(t.T @ t / (t * t).sum() for t in taus)
        b = sum(t @ (t.T @ t) / (t * t).sum() for t in taus)
    merged = torch.nn.Parameter(start.clone())
    opt = torch.optim.Adam([merged], lr=lr, weight_decay=0)
    with torch.no_grad():
        for _ in range(steps):
            if wide:
                g = sum(((merged - t) @ t.T) @ t / (t * t).sum() for t in taus)
            else:
                g = merged @ a - b
            merged.grad = 2 * g
            opt.step()
    return merged.detach()


@dataclass
class Wudi(Method):
    steps: int = 400
    lr: float = 1e-5
    conv: bool = True

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise TransferlabError(f"wudi: steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise TransferlabError(f"wudi: lr must be > 0, got {self.lr}")

    def options(self) -> dict[str, Any]:
        return {"steps": self.steps, "lr": self.lr, "conv": self.conv}

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        cd = compute_dtype(base)
        ds = [d.to(cd) for d in deltas if d is not None]
        if not ds:
            return base
        matrix = base.ndim == 2 or (self.conv and base.ndim > 2)
        if not matrix or min(base.shape[0], base[0].numel()) < 1:
            return (base.to(cd) + torch.stack(ds).sum(0) / len(deltas)).to(base.dtype)
        from .._runtime import current_device

        dev = current_device()
        mats = [d.reshape(d.shape[0], -1).to(dev) for d in ds]
        merged = wudi_matrix(mats, steps=self.steps, lr=self.lr).cpu().reshape(base.shape)
        return (base.to(cd) + merged).to(base.dtype)


@MERGE_METHODS.register("wudi", summary="data-free: per weight matrix, the task vector minimising its interference "
                        "on every task's task-vector subspace (Adam from the sum)",
                        paper="Cheng et al., Whoever Started the Interference Should End It: Guiding Data-Free Model "
                              "Merging via Task Vectors, ICML 2025",
                        reference="tanganke/fusion_bench 54c9e8c (fusion_bench/method/wudi/wudi.py)")
def wudi(steps: int = 400, lr: float = 1e-5, conv: bool = True) -> Wudi:
    return Wudi(int(steps), float(lr), bool(conv))
