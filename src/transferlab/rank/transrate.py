"""TransRate (Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022).

``R(Z) - (1/C) sum_c R(Z_c)`` with the coding rate ``R(Z) = 1/2 logdet(I + Z^T Z / (n eps))`` of the features centred
on the global mean (``Z_c``: the rows of class c, still centred on the global mean; ``n``: the rows in that matrix).
Checked against TLlib ``tllib/ranking/transrate.py`` @ c4aa59e.

The reference takes ``C + 1`` log-determinants of D x D matrices (23 s at N = 5000, D = 2048, C = 100). Here the
whole-set term comes from the covariance eigenvalues when another metric already computed them (else a Cholesky
factorisation), and each class term from the small ``n_c x n_c`` Gram matrix (Sylvester's determinant identity
``det(I_D + A^T A) = det(I_n + A A^T)``), all classes in one batched Cholesky factorisation.
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._stats import FeatureStats


def _logdet_spd(a: np.ndarray) -> np.ndarray:
    """log det of (a stack of) symmetric positive-definite matrices, by Cholesky."""
    chol = np.linalg.cholesky(a)
    return 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)


def coding_rates_by_class(z: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """``R(Z_c)`` for every class c of the (already centred) rows ``z``.

    Classes with fewer rows than D are batched by size: every class of n rows in one [k, n, D] stack and one batched
    Cholesky factorisation of their n x n Gram matrices (no padding to the largest class, so memory stays O(N D)).
    """
    c = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=c)
    d = z.shape[1]
    rates = np.zeros(c)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    small = (counts > 0) & (counts < d)
    for m in np.unique(counts[small]):
        classes = np.flatnonzero(counts == m)
        rows = order[starts[classes][:, None] + np.arange(m)]  # [k, m]: the rows of each class, in their order
        blocks = z[rows] / np.sqrt(m * eps)
        gram = blocks @ blocks.transpose(0, 2, 1)
        gram[:, np.arange(m), np.arange(m)] += 1.0
        rates[classes] = 0.5 * _logdet_spd(gram)
    for k in np.flatnonzero(counts >= d):  # classes with at least D rows (rare): the D x D form
        rows = z[order[starts[k]:starts[k + 1]]]
        rates[k] = 0.5 * _logdet_spd(np.eye(d) + rows.T @ rows / (len(rows) * eps))
    return rates


@METRICS.register(
    "transrate",
    needs="features",
    higher_is_better=True,
    paper="Huang et al., Frustratingly Easy Transferability Estimation, ICML 2022",
    reference="thuml/Transfer-Learning-Library tllib/ranking/transrate.py @ c4aa59e",
    summary="coding rate of all features minus the mean coding rate within each class",
)
def transrate(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
              eps: float = 1e-4, stats: FeatureStats | None = None) -> float:
    """TransRate (higher is better). Not scale-invariant: ``eps`` is absolute, as in the reference."""
    stats = stats or FeatureStats(features)
    n, d = stats.n, stats.d
    z = stats.f - stats.mean
    if "cov_spectrum" in stats.__dict__:  # shared with H-score: Z^T Z = (n - 1) cov, eigenvalues known
        w = np.clip(stats.cov_spectrum.w, 0.0, None)
        total = 0.5 * float(np.sum(np.log1p(w * ((n - 1) / (n * eps)))))
    elif n < d:
        total = 0.5 * float(_logdet_spd(np.eye(n) + z @ z.T / (n * eps)))
    else:
        total = 0.5 * float(_logdet_spd(np.eye(d) + stats.cov * ((n - 1) / (n * eps))))
    return total - float(np.mean(coding_rates_by_class(z, labels, eps)))
