"""Decompositions shared by the metrics of one feature matrix.

LogME, H-score and shrinkage H-score all need a Gram matrix and a symmetric eigendecomposition. Computing them once
per model (one ``F^T F``, one ``eigh`` of it, one ``eigh`` of the covariance) instead of once per metric is most of
their cost.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

# scipy.linalg and scipy.sparse are imported where they are used: a warm rerun (every score cached) never needs
# them, and they were half of `import transferlab.rank`


class SymmetricSpectrum:
    """Eigenvalues of a symmetric matrix ``A``, projections ``V^T B`` onto its eigenvectors and shifted solves
    ``(A + t I)^{-1} B``, all without forming V.

    ``A = Q T Q^T`` (Householder tridiagonalisation, LAPACK ``dsytrd``). Eigenvalues come from ``T`` alone
    (``dsterf``); ``Q^T B`` applies the stored reflectors (``dormqr``, as ``dormtr`` does); ``V^T B = W^T Q^T B``
    needs the eigenvectors W of T (MRRR, ``dstemr``, computed on first use); a shifted solve is an O(n) tridiagonal
    solve (``dptsv``) in Q's basis. The ``O(n^3)`` back-transformation of a full ``eigh`` is never done: the metrics
    only ever need a few columns (one-hot targets, class means).
    """

    def __init__(self, a: np.ndarray) -> None:
        import scipy.linalg
        from scipy.linalg import lapack

        n = a.shape[0]
        self.n = n
        self._v: np.ndarray | None = None
        self._wt: np.ndarray | None = None
        if n < 3:  # tiny: LAPACK workspace queries are not worth it
            self.w, self._v = scipy.linalg.eigh(a, check_finite=False)
            return
        lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
        c, d, e, tau, info = lapack.dsytrd(np.asarray(a, dtype=np.float64), lower=1, lwork=max(lwork, 1))
        if info != 0:  # pragma: no cover - LAPACK argument errors only
            raise np.linalg.LinAlgError(f"dsytrd failed (info={info})")
        # one Fortran-ordered copy of the reflectors, made once (f2py would copy the strided view on every call)
        self._reflectors, self._tau, self._d, self._e = np.asfortranarray(c[1:, :-1]), tau, d, e
        self.w = scipy.linalg.eigh_tridiagonal(d, e, eigvals_only=True, lapack_driver="sterf", check_finite=False)

    def qt(self, b: np.ndarray) -> np.ndarray:
        """``Q^T b``: coordinates in the tridiagonal basis."""
        from scipy.linalg import lapack

        z = np.array(b, dtype=np.float64, order="F", copy=True)
        if self._v is not None:
            return z
        lwork = int(lapack.dormqr("L", "T", self._reflectors, self._tau, z[1:], lwork=-1)[1][0])
        qz, _, info = lapack.dormqr("L", "T", self._reflectors, self._tau, z[1:], lwork=max(1, lwork),
                                    overwrite_c=0)
        if info != 0:  # pragma: no cover
            raise np.linalg.LinAlgError(f"dormqr failed (info={info})")
        z[1:] = qz
        return z

    def project(self, b: np.ndarray) -> np.ndarray:
        """``V^T b`` for ``b`` of shape [n, k] (rows in the order of ``self.w``, ascending)."""
        import scipy.linalg

        if self._v is not None:
            return self._v.T @ np.asarray(b, dtype=np.float64)
        if self._wt is None:
            try:
                _, self._wt = scipy.linalg.eigh_tridiagonal(self._d, self._e, lapack_driver="stemr",
                                                            check_finite=False)
            except np.linalg.LinAlgError:  # MRRR can fail on pathological spectra: implicit QL/QR instead
                _, self._wt = scipy.linalg.eigh_tridiagonal(self._d, self._e, lapack_driver="stev",
                                                            check_finite=False)
        return self._wt.T @ self.qt(b)

    def top_vectors(self, k: int) -> np.ndarray:
        """The eigenvectors [n, k] of the k largest eigenvalues (ascending order): those of T (MRRR on a subset),
        brought back with Q's reflectors, O(n^2 k) instead of a full back-transformation."""
        import scipy.linalg
        from scipy.linalg import lapack

        k = min(k, self.n)
        if self._v is not None:
            return self._v[:, self.n - k:]
        _, wk = scipy.linalg.eigh_tridiagonal(self._d, self._e, select="i", select_range=(self.n - k, self.n - 1),
                                              check_finite=False)
        v = np.array(wk, dtype=np.float64, order="F")
        lwork = int(lapack.dormqr("L", "N", self._reflectors, self._tau, v[1:], lwork=-1)[1][0])
        qv, _, info = lapack.dormqr("L", "N", self._reflectors, self._tau, v[1:], lwork=max(1, lwork), overwrite_c=0)
        if info != 0:  # pragma: no cover
            raise np.linalg.LinAlgError(f"dormqr failed (info={info})")
        v[1:] = qv
        return v

    def solve_shifted_qt(self, zb: np.ndarray, t: float) -> np.ndarray:
        """``(T + t I)^{-1} zb`` for ``zb = Q^T b``: the solve ``(A + t I)^{-1} b`` in Q's basis (norms and inner
        products with ``zb`` are those of the original basis)."""
        from scipy.linalg import lapack

        if self._v is not None:
            return (self._v / (self.w + t)) @ (self._v.T @ zb)
        _, _, x, info = lapack.dptsv(self._d + t, self._e, zb)
        if info != 0:  # not positive definite (t tiny against rounding): pivoted general solve
            _, _, _, x, info = lapack.dgtsv(self._e, self._d + t, self._e, zb)
            if info != 0:
                raise np.linalg.LinAlgError(f"singular shifted system (t={t:g})")
        return x


#: Row blocks of the [B, C] arrays (posteriors, pairwise class terms) hold at most this many elements (2 MB of
#: float64), whatever C: memory stays O(N D + C D) plus a few such blocks. Small blocks stay in cache: at C = 10,000
#: they are faster than 32 MB ones.
BLOCK_ELEMENTS = 1 << 18


def block_rows(width: int, budget: int | None = None) -> int:
    """Rows per block so that a [rows, width] array holds at most ``budget`` (default ``BLOCK_ELEMENTS``) elements,
    at least one row."""
    return max(1, (budget or BLOCK_ELEMENTS) // max(int(width), 1))


def class_sums(x: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
    """Per-class sums [C, D] of the rows of ``x`` (labels in 0..C-1), in O(N D) time and O(N + C D) memory: the
    [C, N] indicator is sparse (one entry per example), never a dense matrix."""
    import scipy.sparse

    n = len(labels)
    indicator = scipy.sparse.csc_matrix((np.ones(n), np.asarray(labels), np.arange(n + 1)), shape=(c, n))
    return np.asarray(indicator @ x)


def class_means(x: np.ndarray, labels: np.ndarray, c: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means [C, D] of the rows of ``x`` and the class counts [C] (labels in 0..C-1; an empty class has a
    zero mean). O(N D): no per-class loop and no dense [C, N] indicator."""
    c = int(labels.max()) + 1 if c is None else c
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    return class_sums(x, labels, c) / np.maximum(counts, 1.0)[:, None], counts


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
