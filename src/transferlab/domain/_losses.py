"""The losses of domain adaptation, as functions of tensors (tested against thuml/Transfer-Learning-Library on fixed
tensors: tests/domain/data).

- gradient reversal: identity forward, −λ·grad backward; DANN's schedule λ(p) = 2/(1 + exp(−10p)) − 1;
- ``dann_loss``: 0.5·[mean BCE(D(f_s), 1) + mean BCE(D(f_t), 0)] on the joint batch through the reversal;
- ``cdan_loss``: the same on the multilinear map of features and (stopped-gradient) predictions, or its randomised
  projection; with entropy conditioning each example weighs 1 + e^(−H(g)), normalised over both domains;
- ``mcc_loss``: minimum class confusion of target predictions at a temperature.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

EPS = 1e-5  # inside the entropy's log, as the references


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.neg() * ctx.coeff, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """``x`` unchanged forward; the gradient flowing back is multiplied by ``-coeff``."""
    return _Reverse.apply(x, float(coeff))


def dann_coefficient(progress: float, gamma: float = 10.0, high: float = 1.0) -> float:
    """λ(p) = 2·high/(1 + exp(−γ·p)) − high (Ganin & Lempitsky 2015): 0 at the start, ``high`` at the end of
    training (p: the fraction of training done)."""
    return 2.0 * high / (1.0 + math.exp(-gamma * float(progress))) - high


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Per-row entropy of probabilities, −Σ p·log(p + 1e-5)."""
    return -(p * torch.log(p + EPS)).sum(1)


def _bce_logits(logits: torch.Tensor, target: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example binary cross-entropy of a discriminator's logits against a constant label (weighted)."""
    loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")
    return loss if weight is None else loss * weight


def _domain_accuracy(logits_s: torch.Tensor, logits_t: torch.Tensor) -> float:
    """Mean of the discriminator's accuracy on source (label 1) and on target (label 0), in [0, 1]."""
    with torch.no_grad():
        return 0.5 * (float((logits_s >= 0).float().mean()) + float((logits_t < 0).float().mean()))


def dann_loss(discriminator: Any, f_s: torch.Tensor, f_t: torch.Tensor, coeff: float,
              w_s: torch.Tensor | None = None, w_t: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """(loss, domain accuracy): the discriminator sees source and target features in one batch through the gradient
    reversal (so its batch norms see both domains); weights multiply each example's cross-entropy (mean over the
    count, not over the weights)."""
    d = discriminator(reverse_gradient(torch.cat([f_s, f_t]), coeff)).reshape(-1)
    d_s, d_t = d[:len(f_s)], d[len(f_s):]
    loss = 0.5 * (_bce_logits(d_s, 1.0, w_s).mean() + _bce_logits(d_t, 0.0, w_t).mean())
    return loss, _domain_accuracy(d_s, d_t)


def multilinear_map(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Row-wise outer product g ⊗ f flattened class-major: entry c·D + k is g_c·f_k ([B, C·D])."""
    return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)


class RandomizedMultilinear(torch.nn.Module):
    """(f·R_f) ⊙ (g·R_g) / √d with fixed Gaussian matrices (buffers: saved and resumed with the discriminator)."""

    def __init__(self, features: int, classes: int, dim: int = 1024, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("rf", torch.randn(features, dim, generator=generator))
        self.register_buffer("rg", torch.randn(classes, dim, generator=generator))
        self.dim = dim

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (f @ self.rf) * (g @ self.rg) / math.sqrt(float(self.dim))


def cdan_loss(discriminator: Any, g_s: torch.Tensor, f_s: torch.Tensor, g_t: torch.Tensor, f_t: torch.Tensor,
              coeff: float, entropy_conditioning: bool = False,
              projector: Any = None) -> tuple[torch.Tensor, float]:
    """(loss, domain accuracy) of CDAN: the discriminator sees the multilinear map of the features and the
    predictions (softmax of the logits, gradient stopped), or ``projector(f, g)`` (the randomised map); with
    ``entropy_conditioning`` (CDAN+E) each example's cross-entropy weighs 1 + e^(−H(g)), normalised to mean 1 over
    both domains together (no gradient through the weights)."""
    f = torch.cat([f_s, f_t])
    g = F.softmax(torch.cat([g_s, g_t]), dim=1).detach()
    h = projector(f, g) if projector is not None else multilinear_map(f, g)
    d = discriminator(reverse_gradient(h, coeff)).reshape(-1)
    n = len(f_s)
    per = torch.cat([_bce_logits(d[:n], 1.0), _bce_logits(d[n:], 0.0)])
    if entropy_conditioning:
        u = 1.0 + torch.exp(-entropy(g))
        loss = (u * per).sum() / u.sum()
    else:
        loss = per.mean()
    with torch.no_grad():
        acc = float(torch.cat([(d[:n] >= 0), (d[n:] < 0)]).float().mean())
    return loss, acc


def mcc_loss(logits_t: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion (Jin et al., ECCV 2020) of target logits: p = softmax(z/T); example weights
    1 + e^(−H(p)) (no gradient) normalised to mean 1; C = (p·w)ᵀp with each column normalised to sum 1; the loss is
    the off-diagonal mass / K."""
    p = F.softmax(logits_t / temperature, dim=1)
    u = 1.0 + torch.exp(-entropy(p).detach())
    w = (len(p) * u / u.sum()).unsqueeze(1)
    conf = (p * w).t() @ p
    conf = conf / conf.sum(dim=1)  # confusion is symmetric: row sums are column sums
    k = p.shape[1]
    return (conf.sum() - torch.trace(conf)) / k


# -- source-free: the target alone, from a source model ------------------------------------------------------------


def information_maximisation_loss(logits: torch.Tensor) -> torch.Tensor:
    """SHOT's IM loss: mean H(p_i) − H(mean p) of p = softmax(logits) (entropy + diversity; ≥ −log K)."""
    p = F.softmax(logits, dim=1)
    return entropy(p).mean() - entropy(p.mean(0, keepdim=True)).squeeze(0)


def shot_pseudo_labels(probs: Any, features: Any, threshold: int = 0, rounds: int = 2) -> Any:
    """SHOT's self-supervised pseudo-labels (NumPy): the features with a column of ones appended, L2-normalised;
    centroids weighted by the predictions, each example labelled by the nearest centroid in cosine distance; then once
    more with the hard labels as weights (``rounds`` = 2: one refinement). Classes the current labels give at most
    ``threshold`` examples get no centroid."""
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    z = np.asarray(features, dtype=np.float64)
    z = np.hstack([z, np.ones((len(z), 1))])
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    k = p.shape[1]
    label, aff = p.argmax(1), p
    for _ in range(rounds):
        centres = aff.T @ z / (1e-8 + aff.sum(0)[:, None])
        kept = np.flatnonzero(np.bincount(label, minlength=k) > threshold)
        c = centres[kept]
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        label = kept[np.argmax(z @ c.T, axis=1)]  # the nearest in cosine distance: the largest cosine
        aff = np.eye(k)[label]
    return label


def shot_loss(logits: torch.Tensor, pseudo: torch.Tensor | None, weight: float = 0.3) -> torch.Tensor:
    """IM + ``weight`` x cross-entropy against the pseudo-labels (SHOT-IM: ``pseudo`` None)."""
    loss = information_maximisation_loss(logits)
    return loss if pseudo is None else loss + weight * F.cross_entropy(logits, pseudo)


def _neighbours(query: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [.., k] of each query's k most cosine-similar bank rows, the most similar (itself) left out."""
    return torch.topk(query @ bank.T, k=k + 1, dim=-1, largest=True).indices[..., 1:]


def update_banks_(features: torch.Tensor, probs: torch.Tensor, index: torch.Tensor, fea_bank: torch.Tensor,
                  score_bank: torch.Tensor) -> torch.Tensor:
    """Write the batch's L2-normalised features and its predictions into the banks (in place, no gradient); returns
    the normalised features."""
    with torch.no_grad():
        z = F.normalize(features.detach(), dim=1)
        fea_bank[index] = z
        score_bank[index] = probs.detach()
    return z


def nrc_loss(probs: torch.Tensor, z: torch.Tensor, index: torch.Tensor, fea_bank: torch.Tensor,
             score_bank: torch.Tensor, k: int = 5, kk: int = 5, weak: float = 0.1) -> torch.Tensor:
    """Neighbourhood reciprocity clustering (Yang et al., NeurIPS 2021) of a batch's predictions ``probs`` with its
    normalised features ``z`` already in the banks: −mean_i Σ_k A_ik p_i·s_k over the K nearest neighbours (A = 1
    where i is among the neighbour's own KK nearest, ``weak`` otherwise) − mean_i Σ_(k,m) weak·p_i·s_km over their KK
    nearest (the expanded neighbours) + Σ_c p̄_c log p̄_c (diversity). The reference writes the two affinity terms as
    ``kl_div`` of probabilities, which adds a constant (the banks' Σ s log s) and has the same gradient."""
    with torch.no_grad():
        near = _neighbours(z, fea_bank, k)  # [B, K]
        near_near = _neighbours(fea_bank[near], fea_bank, kk)  # [B, K, KK]
        reciprocal = (near_near == index.view(-1, 1, 1)).any(-1)
        a = torch.where(reciprocal, torch.ones_like(near, dtype=probs.dtype), torch.full_like(near, weak,
                                                                                             dtype=probs.dtype))
        s_near, s_expanded = score_bank[near], score_bank[near_near].flatten(1, 2)  # [B, K, C], [B, K·KK, C]
    attract = (torch.einsum("bc,bkc->bk", probs, s_near) * a).sum(1).mean()
    expanded = (torch.einsum("bc,bkc->bk", probs, s_expanded) * weak).sum(1).mean()
    mean = probs.mean(0)
    return -attract - expanded + (mean * torch.log(mean + EPS)).sum()


def aad_coefficient(progress: float, alpha: float = 1.0, beta: float = 5.0) -> float:
    """AaD's dispersion weight λ = α(1 + 10·p)^−β over training progress p."""
    return float(alpha * (1.0 + 10.0 * float(progress)) ** (-beta))


def aad_loss(probs: torch.Tensor, z: torch.Tensor, fea_bank: torch.Tensor, score_bank: torch.Tensor, k: int = 5,
             coeff: float = 1.0) -> torch.Tensor:
    """Attracting and dispersing (Yang et al., NeurIPS 2022): −mean_i Σ_k p_i·s_k over the K nearest neighbours in
    the banks + ``coeff`` x mean_i Σ_(j≠i) p_i·p_j over the batch's others (gradient through both)."""
    with torch.no_grad():
        s_near = score_bank[_neighbours(z, fea_bank, k)]
    attract = torch.einsum("bc,bkc->b", probs, s_near).mean()
    dot = probs @ probs.T
    disperse = (dot.sum(1) - dot.diagonal()).mean()
    return -attract + coeff * disperse
