"""H-score (Bao et al., ICIP 2019) and its shrinkage-regularised form (Ibrahim, Ponomareva, Mazumder, ICLR 2022).

Checked against TLlib ``tllib/ranking/hscore.py`` (``h_score`` and ``regularized_h_score``). Both share one
eigendecomposition of the feature covariance: the Ledoit-Wolf estimate ``(1 - s) S + s mu I`` has the same
eigenvectors as ``S``.
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._stats import FeatureStats, SymmetricSpectrum, class_means

_RCOND = 1e-15  # as numpy.linalg.pinv in the reference


def _between_class(stats: FeatureStats, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred class means M [C, D] and class counts n_c: cov(E[f|y]) = M^T diag(n_c) M / (N - 1)."""
    means, counts = class_means(stats.f, labels)
    return means - stats.mean, counts


_WELL_CONDITIONED = 1e-10  # min/max eigenvalue above which pinv(A) = inv(A) is computed by a solve


def _trace_pinv_between(spec: SymmetricSpectrum, factor: float, shift: float, means: np.ndarray,
                        counts: np.ndarray, scale: float) -> float:
    """tr(pinv(A) @ M^T diag(n) M) * scale for A = factor * S + shift * I, S the matrix behind ``spec``.

    Well-conditioned A: pinv(A) = inv(A), one O(D) tridiagonal solve per class mean (no eigenvectors). Otherwise the
    means are projected onto the eigenvectors and the pseudo-inverse cut-off is numpy's (relative 1e-15).
    """
    eigvals = factor * spec.w + shift
    amax = np.max(np.abs(eigvals))
    if amax > 0 and np.min(eigvals) > _WELL_CONDITIONED * amax:
        zb = spec.qt(means.T)  # [D, C]
        x = zb / shift if factor == 0 else spec.solve_shifted_qt(zb / factor, shift / factor)
        return float(scale * np.einsum("c,kc,kc->", counts, zb, x))
    cutoff = _RCOND * amax
    inv = np.divide(1.0, eigvals, out=np.zeros_like(eigvals), where=np.abs(eigvals) > cutoff)
    proj = spec.project(means.T)
    return float(scale * np.einsum("c,kc,k->", counts, proj * proj, inv))


@METRICS.register(
    "hscore",
    needs="features",
    higher_is_better=True,
    paper="Bao et al., An Information-Theoretic Approach to Transferability in Task Transfer Learning, ICIP 2019",
    reference="thuml/Transfer-Learning-Library tllib/ranking/hscore.py::h_score @ c4aa59e",
    summary="tr(cov(f)^+ cov(E[f|y])): class separation relative to feature spread",
)
def hscore(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
           stats: FeatureStats | None = None) -> float:
    stats = stats or FeatureStats(features)
    spec = stats.cov_spectrum
    means, counts = _between_class(stats, labels)
    return _trace_pinv_between(spec, 1.0, 0.0, means, counts, 1.0 / (stats.n - 1))


@METRICS.register(
    "hscore_shrinkage",
    needs="features",
    higher_is_better=True,
    paper="Ibrahim et al., Newer is not always better: Rethinking transferability metrics, ICLR 2022",
    reference="thuml/Transfer-Learning-Library tllib/ranking/hscore.py::regularized_h_score @ c4aa59e",
    summary="H-score with a Ledoit-Wolf shrunk feature covariance",
)
def hscore_shrinkage(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
                     stats: FeatureStats | None = None) -> float:
    stats = stats or FeatureStats(features)
    n = stats.n
    s = stats.ledoit_wolf_shrinkage
    spec = stats.cov_spectrum
    mu = np.sum(spec.w) * (n - 1) / n / stats.d  # trace of the ddof=0 covariance / D
    means, counts = _between_class(stats, labels)
    # Ledoit-Wolf covariance (1 - s) S_emp + s mu I with S_emp = S (n - 1) / n
    return _trace_pinv_between(spec, (1.0 - s) * (n - 1) / n, s * mu, means, counts, (1.0 - s) / (n - 1))
