"""The distillation losses, written from the papers (formulas in docs/distill.md).

Notation: ``z_s`` student logits [B, C]; teacher targets are probabilities at temperature T, [B, C]; ``y`` labels
[B] with -1 for unlabelled examples (no cross-entropy for them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _f(z: Any) -> Any:
    """float32 for half-precision logits (mixed precision); float32 and float64 as they are."""
    import torch

    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def tempered(logits: Any, temperature: float) -> Any:
    """softmax(logits / T) (at least float32)."""
    import torch

    return torch.softmax(_f(logits) / temperature, dim=1)


def soft_kl(z_s: Any, p_t: Any, temperature: float) -> Any:
    """T² · KL(p_t ‖ softmax(z_s / T)), summed over classes and averaged over the batch (Hinton et al.: the T² keeps
    the gradient's scale independent of T)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    log_q = torch.log_softmax(_f(z_s) / temperature, dim=1)
    return temperature ** 2 * F.kl_div(log_q, p_t, reduction="batchmean")


def hard_ce(z_s: Any, y: Any) -> Any:
    """Cross-entropy over the labelled examples (y >= 0), averaged over them; 0 when the batch has none."""
    import torch.nn.functional as F  # noqa: N812

    labelled = y >= 0
    if not bool(labelled.any()):
        return _f(z_s).sum() * 0.0
    return F.cross_entropy(_f(z_s[labelled]), y[labelled])


def kd_loss(z_s: Any, p_t: Any, y: Any, temperature: float, kd_weight: float, z_soft: Any = None) -> Any:
    """Hinton et al.: (1 − w) · CE(z_s, y) + w · T² · KL(p_t ‖ softmax(z_s / T)), ``w`` = ``kd_weight``; ``z_soft``:
    other student logits for the soft term (the standardised ones under ``zscore``; the CE keeps ``z_s``).

    torchdistill's ``KDLoss`` writes α·CE + (1 − α)·T²·KL: its α is our 1 − w (and at α = 0 it drops the T²)."""
    kl = soft_kl(z_s if z_soft is None else z_soft, p_t, temperature)
    if kd_weight >= 1.0:
        return kl
    return (1.0 - kd_weight) * hard_ce(z_s, y) + kd_weight * kl


def mixed_teacher(teacher_logits: Sequence[Any], temperature: float, weights: Sequence[float] | None = None) -> Any:
    """The ensemble teacher: Σ_k w_k · softmax(z_k / T) (w: uniform by default; weights sum to 1)."""
    ps = [tempered(z, temperature) for z in teacher_logits]
    if weights is None:
        weights = [1.0 / len(ps)] * len(ps)
    out = ps[0] * float(weights[0])
    for p, w in zip(ps[1:], weights[1:], strict=True):
        out = out + p * float(w)
    return out


def kl_dp_choice(candidate_logits: Sequence[Any], y: Any) -> Any:
    """Roth et al., ICLR 2024 (KL+DP): per example, the index of the candidate to distil from — the one giving the
    true class the highest probability (softmax at T = 1); for an unlabelled example (y < 0), the one with the highest
    maximum probability. Candidate 0 is the student's frozen starting point and wins ties: a teacher must be strictly
    better to be followed."""
    import torch

    probs = torch.stack([torch.softmax(_f(z), dim=1) for z in candidate_logits])  # [K, B, C]
    labelled = y >= 0
    on_true = probs.gather(2, y.clamp(min=0).view(1, -1, 1).expand(len(candidate_logits), -1, 1)).squeeze(2)
    conf = torch.where(labelled.view(1, -1), on_true, probs.max(dim=2).values)  # [K, B]
    best = conf.argmax(dim=0)  # first maximum: candidate 0 on ties
    return best


def kl_dp_targets(candidate_logits: Sequence[Any], y: Any, temperature: float) -> tuple[Any, Any]:
    """(the chosen candidates' probabilities at T [B, C], the choice [B])."""
    import torch

    choice = kl_dp_choice(candidate_logits, y)
    stacked = torch.stack([_f(z) for z in candidate_logits])  # [K, B, C]
    chosen = stacked[choice, torch.arange(stacked.shape[1], device=stacked.device)]
    return tempered(chosen, temperature), choice


def hint_loss(f_s: Any, f_t: Any, projector: Any) -> Any:
    """FitNets-style hint on pooled features: mean squared error between the projected student features and the
    teacher's (the teacher's are fixed targets)."""
    import torch.nn.functional as F  # noqa: N812

    return F.mse_loss(projector(_f(f_s)), _f(f_t).detach())


def dkd_terms(z_s: Any, z_t: Any, target: Any, temperature: float) -> tuple[Any, Any]:
    """Zhao et al., CVPR 2022 (Decoupled Knowledge Distillation): (TCKD, NCKD), each T²·KL(teacher ‖ student)
    averaged over the batch; ``target`` [B] holds a class per row (no -1).

    - TCKD: over the binary distribution (the target class's probability, the other classes' total) at T, computed
      from log-sum-exps of the two parts (the same value as summing the probabilities, without taking the log of a
      sum that has underflowed);
    - NCKD: over the distribution among the non-target classes at T: the target logit (over T) lowered by 1000
      before the softmax, as the paper's reference does, so that its probability vanishes."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    zs, zt = _f(z_s) / temperature, _f(z_t) / temperature
    gt = F.one_hot(target, zs.shape[1]).bool()

    def binary_log(z: Any) -> Any:  # log (p_target, p_rest) [B, 2]
        everything = torch.logsumexp(z, dim=1)
        on_target = z.gather(1, target.view(-1, 1)).squeeze(1)
        rest = torch.logsumexp(z.masked_fill(gt, float("-inf")), dim=1)
        return torch.stack([on_target - everything, rest - everything], dim=1)

    t2 = temperature ** 2
    tckd = t2 * F.kl_div(binary_log(zs), binary_log(zt), reduction="batchmean", log_target=True)
    lowered = 1000.0 * gt.to(zs.dtype)
    nckd = t2 * F.kl_div(torch.log_softmax(zs - lowered, dim=1), torch.log_softmax(zt - lowered, dim=1),
                         reduction="batchmean", log_target=True)
    return tckd, nckd


def standardised(z: Any) -> Any:
    """Sun et al., CVPR 2024 (logit standardisation): (z − mean) / (std + 1e-7) over each row's classes, with the
    unbiased (n − 1) standard deviation, as the reference's ``normalize`` (``torch.std``'s default) computes it."""
    z = _f(z)
    return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + 1e-7)


def _pearson_rows(a: Any, b: Any, eps: float = 1e-8) -> Any:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` [B]: the cosine of the centred rows, with
    ``eps`` added to the product of the norms (a constant row correlates 0)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(z_s: Any, p_t: Any, temperature: float, beta: float = 1.0, gamma: float = 1.0) -> Any:
    """Huang et al., NeurIPS 2022 (DIST): T²·(β·(1 − mean_i ρ(p_s[i,:], p_t[i,:])) + γ·(1 − mean_c ρ(p_s[:,c],
    p_t[:,c]))), p_s = softmax(z_s / T), ``p_t`` the teacher's probabilities at T; ρ = Pearson. The first term is the
    inter-class relation (per example, over classes), the second the intra-class one (per class, over the batch)."""
    p_s = tempered(z_s, temperature)
    p_t = p_t.to(p_s.dtype)
    inter = 1.0 - _pearson_rows(p_s, p_t).mean()
    intra = 1.0 - _pearson_rows(p_s.t(), p_t.t()).mean()
    return temperature ** 2 * (beta * inter + gamma * intra)
