"""LogME: the log of the maximum marginal evidence of a Bayesian linear model on the features.

You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021;
extended in JMLR 2022 (fixed-point iteration). Checked against thuml/LogME ``LogME.py`` (fixed-point ``_fit``).

One eigendecomposition of the Gram matrix (``F^T F`` when N > D, ``F F^T`` otherwise) serves every class; the
fixed-point iteration then runs for all classes at once on vectors of length rank(F).
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._stats import FeatureStats
from ._validate import one_hot

_EPS = 1e-5  # the reference's guard in the alpha/beta updates


def _spectrum(stats: FeatureStats, y1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (sigma [k], X [k, C]): squared singular values of F (s > 1e-10, as in the reference) and U^T y for
    each one-hot column, from the eigendecomposition of the smaller Gram matrix."""
    spec = stats.gram_spectrum
    keep = spec.w > 1e-20
    sigma = spec.w[keep]
    if stats.n > stats.d:  # Gram = F^T F = V S^2 V^T; U^T Y = V^T F^T Y / s without forming U = F V / s
        x = spec.project(stats.f.T @ y1)[keep] / np.sqrt(sigma)[:, None]
    else:  # Gram = F F^T = U S^2 U^T
        x = spec.project(y1)[keep]
    return sigma, x


@METRICS.register(
    "logme",
    needs="features",
    higher_is_better=True,
    paper="You et al., LogME, ICML 2021 / JMLR 2022",
    reference="thuml/LogME LogME.py @ 56551ca (fixed-point)",
    summary="mean per-class log evidence of Bayesian linear regression on one-hot targets",
)
def logme(
    features: np.ndarray,
    labels: np.ndarray,
    source_probs: np.ndarray | None = None,
    *,
    max_iter: int = 11,
    tol: float = 1e-3,
    full_rank_evidence: bool = True,
    stats: FeatureStats | None = None,
) -> float:
    """LogME score (higher is better), mean over classes of the log evidence per example.

    ``max_iter``/``tol`` follow the reference (11 iterations, relative change of alpha/beta below 1e-3).
    ``full_rank_evidence``: the reference's evidence omits ``-(D-k)/2 log(alpha)`` when the features have rank
    k < D (always when N <= D); we include it by default, which is the exact evidence of the D-dimensional model.
    Pass ``False`` to reproduce the reference's figure.
    """
    stats = stats or FeatureStats(features)
    n, d = stats.n, stats.d
    c = int(labels.max()) + 1
    y1 = one_hot(labels, c)
    sigma, x = _spectrum(stats, y1)
    k = len(sigma)
    sig = sigma[:, None]
    x2 = x * x  # [k, C]
    res_x2 = y1.sum(axis=0) - x2.sum(axis=0)  # ||y||^2 - ||U^T y||^2: the part of y outside span(U)
    alpha = np.ones(c)
    beta = np.ones(c)
    active = np.ones(c, dtype=bool)
    m2 = np.zeros(c)
    res2 = np.zeros(c)
    for _ in range(max_iter):
        t = alpha[active] / beta[active]
        s_t = sig / (sig + t)  # [k, a]
        gamma = s_t.sum(axis=0)
        m2_a = (sig * x2[:, active] / (sig + t) ** 2).sum(axis=0)
        res2_a = (x2[:, active] * (1.0 - s_t) ** 2).sum(axis=0) + res_x2[active]
        alpha_a = gamma / (m2_a + _EPS)
        beta_a = (n - gamma) / (res2_a + _EPS)
        idx = np.flatnonzero(active)
        alpha[idx], beta[idx], m2[idx], res2[idx] = alpha_a, beta_a, m2_a, res2_a
        converged = np.abs(alpha_a / beta_a - t) / t <= tol
        active[idx[converged]] = False
        if not active.any():
            break
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * np.log(alpha[None, :] + beta[None, :] * sig).sum(axis=0)
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2 * np.pi)
    )
    if full_rank_evidence and k < d:
        evidence -= (d - k) / 2.0 * np.log(alpha)
    return float(np.mean(evidence / n))
