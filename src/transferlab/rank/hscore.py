"""H-score (Bao et al., ICIP 2019) and its shrinkage-regularised form (Ibrahim, Ponomareva, Mazumder, ICLR 2022).

Checked against TLlib ``tllib/ranking/hscore.py`` (``h_score`` and ``regularized_h_score``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._registry import METRICS

_RCOND = 1e-15  # as numpy.linalg.pinv in the reference


def _class_means_term(f: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred class means M [C, D] and class counts n_c: cov(E[f|y]) = M^T diag(n_c) M / (N - 1)."""
    c = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    sums = np.zeros((c, f.shape[1]))
    np.add.at(sums, labels, f)
    means = sums / counts[:, None]
    return means - f.mean(axis=0), counts


def _trace_pinv_between(cov_f: np.ndarray, means: np.ndarray, counts: np.ndarray, scale: float) -> float:
    """tr(pinv(cov_f) @ M^T diag(n) M) * scale, through one symmetric eigendecomposition."""
    w, v = scipy.linalg.eigh(cov_f, check_finite=False, driver="evd")
    cutoff = _RCOND * np.max(np.abs(w))
    inv = np.divide(1.0, w, out=np.zeros_like(w), where=np.abs(w) > cutoff)
    proj = means @ v  # [C, k]
    return float(scale * np.einsum("c,ck,k->", counts, proj * proj, inv))


@METRICS.register(
    "hscore",
    needs="features",
    higher_is_better=True,
    paper="Bao et al., An Information-Theoretic Approach to Transferability in Task Transfer Learning, ICIP 2019",
    reference="thuml/Transfer-Learning-Library tllib/ranking/hscore.py::h_score @ c4aa59e",
    summary="tr(cov(f)^+ cov(E[f|y])): class separation relative to feature spread",
)
def hscore(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None) -> float:
    n = len(labels)
    f = features - features.mean(axis=0)
    cov_f = (f.T @ f) / (n - 1)
    means, counts = _class_means_term(f, labels)
    return _trace_pinv_between(cov_f, means, counts, 1.0 / (n - 1))


@METRICS.register(
    "hscore_shrinkage",
    needs="features",
    higher_is_better=True,
    paper="Ibrahim et al., Newer is not always better: Rethinking transferability metrics, ICLR 2022",
    reference="thuml/Transfer-Learning-Library tllib/ranking/hscore.py::regularized_h_score @ c4aa59e",
    summary="H-score with a Ledoit-Wolf shrunk feature covariance",
)
def hscore_shrinkage(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None) -> float:
    from sklearn.covariance import LedoitWolf

    n = len(labels)
    f = features - features.mean(axis=0)
    lw = LedoitWolf(assume_centered=False, store_precision=False).fit(f)
    means, counts = _class_means_term(f, labels)
    return _trace_pinv_between(lw.covariance_, means, counts, (1.0 - lw.shrinkage_) / (n - 1))
