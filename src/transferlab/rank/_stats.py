"""Decompositions shared by the metrics of one feature matrix.

LogME, H-score and shrinkage H-score all need a Gram matrix and a symmetric eigendecomposition. Computing them once
per model (one ``F^T F``, one ``eigh`` of it, one ``eigh`` of the covariance) instead of once per metric is most of
their cost.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.linalg


def _eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return scipy.linalg.eigh(a, check_finite=False, driver="evd")


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
    def gram_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        return _eigh(self.gram)

    @cached_property
    def cov(self) -> np.ndarray:
        """Sample covariance (ddof = 1), from the shared Gram matrix when N > D."""
        if self.n > self.d:
            return (self.gram - self.n * np.outer(self.mean, self.mean)) / (self.n - 1)
        fc = self.f - self.mean
        return fc.T @ fc / (self.n - 1)

    @cached_property
    def cov_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        return _eigh(self.cov)

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
