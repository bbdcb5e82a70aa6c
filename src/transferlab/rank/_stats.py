"""Decompositions shared by the metrics of one feature matrix.

LogME, H-score and shrinkage H-score all need a Gram matrix and a symmetric eigendecomposition. Computing them once
per model (one ``F^T F``, one ``eigh`` of it, one ``eigh`` of the covariance) instead of once per metric is most of
their cost.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.linalg
from scipy.linalg import lapack


class SymmetricSpectrum:
    """Eigenvalues of a symmetric matrix ``A`` and projections ``V^T B`` onto its eigenvectors, without forming V.

    ``A = Q T Q^T`` (Householder tridiagonalisation, LAPACK ``dsytrd``), ``T = W diag(w) W^T`` (MRRR, ``dstemr``),
    so ``V^T B = W^T (Q^T B)``: ``Q^T B`` applies the stored reflectors (``dormqr``, as ``dormtr`` does) and the
    ``O(n^3)`` back-transformation of a full ``eigh`` is never done. The metrics only ever need ``V^T B`` for a few
    columns (one-hot targets, class means).
    """

    def __init__(self, a: np.ndarray) -> None:
        n = a.shape[0]
        self.n = n
        if n < 3:  # tiny: LAPACK workspace queries are not worth it
            self.w, v = scipy.linalg.eigh(a, check_finite=False)
            self._v = v
            return
        self._v = None
        lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
        c, d, e, tau, info = lapack.dsytrd(np.asarray(a, dtype=np.float64), lower=1, lwork=max(lwork, 1))
        if info != 0:  # pragma: no cover - LAPACK argument errors only
            raise np.linalg.LinAlgError(f"dsytrd failed (info={info})")
        self._reflectors, self._tau = c[1:, :-1], tau
        try:
            self.w, self._wt = scipy.linalg.eigh_tridiagonal(d, e, lapack_driver="stemr", check_finite=False)
        except np.linalg.LinAlgError:  # MRRR can fail on pathological spectra: fall back to implicit QL/QR
            self.w, self._wt = scipy.linalg.eigh_tridiagonal(d, e, lapack_driver="stev", check_finite=False)

    def project(self, b: np.ndarray) -> np.ndarray:
        """``V^T b`` for ``b`` of shape [n, k] (columns in the order of ``self.w``, ascending)."""
        b = np.asarray(b, dtype=np.float64)
        if self._v is not None:
            return self._v.T @ b
        z = np.array(b, dtype=np.float64, order="F", copy=True)
        lwork = max(1, 64 * z.shape[1])
        qz, _, info = lapack.dormqr("L", "T", self._reflectors, self._tau, z[1:], lwork=lwork, overwrite_c=0)
        if info != 0:  # pragma: no cover
            raise np.linalg.LinAlgError(f"dormqr failed (info={info})")
        z[1:] = qz
        return self._wt.T @ z


class FeatureStats:
    """Lazily computed, cached statistics of a float64 feature matrix ``f`` [N, D]."""

    def __init__(self, features: np.ndarray) -> None:
        self.f = features
        self.n, self.d = features.shape

    @cached_property
    def mean(self) -> np.ndarray:
        return self.f.mean(axis=0)

    @cached_property
    def gram(self) -> np.ndarray:
        """``F^T F`` (D x D) when N > D, else ``F F^T`` (N x N): the smaller one."""
        return self.f.T @ self.f if self.n > self.d else self.f @ self.f.T

    @cached_property
    def gram_spectrum(self) -> SymmetricSpectrum:
        return SymmetricSpectrum(self.gram)

    @cached_property
    def cov(self) -> np.ndarray:
        """Sample covariance (ddof = 1), from the shared Gram matrix when N > D."""
        if self.n > self.d:
            return (self.gram - self.n * np.outer(self.mean, self.mean)) / (self.n - 1)
        fc = self.f - self.mean
        return fc.T @ fc / (self.n - 1)

    @cached_property
    def cov_spectrum(self) -> SymmetricSpectrum:
        return SymmetricSpectrum(self.cov)

    @cached_property
    def ledoit_wolf_shrinkage(self) -> float:
        """Ledoit-Wolf (2004) shrinkage intensity of the empirical (ddof = 0) covariance of the centred features,
        as scikit-learn's ``ledoit_wolf_shrinkage`` computes it, in O(N D + D^2) from the shared covariance:
        ``sum((X^2)^T X^2) = sum_n ||x_n||^4`` needs no second Gram matrix."""
        n, p = self.n, self.d
        emp = self.cov * ((n - 1) / n)
        row_sq = np.einsum("nd,nd->n", self.f, self.f) - 2.0 * self.f @ self.mean + self.mean @ self.mean
        mu = np.trace(emp) / p
        beta_ = float(np.sum(row_sq * row_sq))
        delta_ = float(np.sum(emp * emp))
        beta = (beta_ / n - delta_) / (p * n)
        delta = (delta_ - 2.0 * mu * np.trace(emp) + p * mu * mu) / p
        beta = min(beta, delta)
        return 0.0 if beta == 0 else float(beta / delta)
