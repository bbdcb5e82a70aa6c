"""Novel-class discovery's pieces, written from the papers: Sinkhorn-Knopp pseudo-labels and the swapped prediction
(UNO: Fini et al., ICCV 2021), class-relation distillation (Gu et al., ICCV 2023, "Class-relation Knowledge
Distillation for Novel Class Discovery"; checked against kleinzcy/Cr-KD-NCD @ 0f55bea, model/losses.py
``SinkhornKnopp`` and ``KD``, rKD.py ``swapped_prediction``), and clustering accuracy (the best one-to-one map of
clusters to classes, Hungarian algorithm)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def sinkhorn(logits: Any, epsilon: float = 0.05, iters: int = 3) -> Any:
    """Balanced soft assignments of B examples to K clusters from ``logits`` [B, K]: Q ∝ exp(logits / ε), then
    ``iters`` rounds of (each cluster's total → 1/K, each example's total → 1/B), returned × B (each row sums to 1;
    each column tends to B/K as the rounds go on). No gradient."""
    import torch

    with torch.no_grad():
        q = logits.float() / epsilon
        q = torch.exp(q - q.max()).t()  # [K, B]; the shift cancels in the normalisations
        q = q / q.sum()
        k, b = q.shape
        for _ in range(iters):
            q = q / q.sum(dim=1, keepdim=True) / k
            q = q / q.sum(dim=0, keepdim=True) / b
        return (q * b).t()


def swapped_prediction(logits: Sequence[Any], targets: Sequence[Any], temperature: float = 0.1) -> Any:
    """Each view predicts the other's targets: mean over (view, other view) of the cross-entropy
    −Σ_c t_c·log softmax(z / τ)_c, averaged over the batch (two views: ½(CE(z₂, t₁) + CE(z₁, t₂)))."""
    import torch

    from ._losses import _f

    n = len(logits)
    total = logits[0].new_zeros(())
    for v in range(n):
        for o in range(n):
            if o != v:
                log_p = torch.log_softmax(_f(logits[o]) / temperature, dim=1)
                total = total + (-(targets[v] * log_p).sum(1)).mean()
    return total / (n * (n - 1))


def relation_kd(student: Any, teacher_known: Any, n_known: int, temperature: float = 4.0) -> tuple[Any, Any]:
    """Class-relation distillation on unlabelled examples: the known-class model's distribution over the known classes,
    p = softmax(z_old / T), kept by the new model's known-class part, q = softmax(z[..., :n_known] / T), per example
    weighted by w = the new model's probability on the known classes, Σ_{c < n_known} softmax(z / T)_c, divided by its
    mean over every example and view (an example like the known classes is held to their relations, one unlike them
    less; w keeps its gradient, the paper's learnable weighting): mean w·T²·Σ_c −p_c·log q_c. Logits [..., C] (the
    reference stacks the views: [V, B, C]) come already divided by the heads' temperature, as the reference's.
    Returns (the term, the mean of w before the division: near 0, the term is off)."""
    import torch

    from ._losses import _f

    p = torch.softmax(_f(teacher_known.detach()) / temperature, dim=-1)
    log_q = torch.log_softmax(_f(student[..., :n_known]) / temperature, dim=-1)
    w = torch.softmax(_f(student) / temperature, dim=-1)[..., :n_known].sum(-1)
    mass = w.mean()
    return (-(p * log_q).sum(-1) * temperature ** 2 * (w / mass)).mean(), mass.detach()


def cluster_accuracy(y_true: Any, y_pred: Any) -> float:
    """The share of examples right under the best one-to-one map of predicted clusters to classes
    (scipy's ``linear_sum_assignment`` on the contingency table)."""
    from scipy.optimize import linear_sum_assignment

    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if not len(y_true):
        return float("nan")
    _, t = np.unique(y_true, return_inverse=True)
    _, p = np.unique(y_pred, return_inverse=True)
    table = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(y_true))

