"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao et al., "Not All Models Are Equal: Predicting Model
Transferability in a Self-challenging Fisher Space", ECCV 2022). Checked against TencentARC/SFDA ``metrics.py``
``SFDA_Score`` @ 3b7edf7.

1. A regularised linear discriminant: within-class scatter ``S_w = sum_c pi_c Cov_c`` (biased covariances), shrunk
   ``(1 - lam) S_w + lam tr(S_w)/D I`` with ``lam = max(exp(-5 lambda_max(S_w)), 1e-10)`` (lambda_max from three rounds
   of power iteration started at the row sums of S_w, as the reference does); posteriors
   ``softmax_c(x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log pi_c)``.
2. ConfMix: each example moves towards the mean of the *other* classes' means, keeping a weight
   ``softmax(p)[y]`` of itself (a softmax of the probabilities, as in the reference).
3. The same discriminant (same lam) refitted on the mixed features; the score is the mean posterior of the true class.

The reference solves a D x D generalised eigenproblem twice, then keeps every eigenvector, so the projection
``V V^T`` equals ``S^-1``: here one Cholesky solve per pass, and S_w comes from the Gram matrix (no per-class loop).
Posteriors are taken a block of rows at a time (memory O(N D + C D), never [N, C]).
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._stats import FeatureStats, block_rows, class_means


def within_scatter(gram: np.ndarray, means: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``sum_c (n_c/N) Cov_c`` (biased) from ``F^T F``: ``(F^T F - M^T diag(n) M) / N``."""
    n = counts.sum()
    return (gram - (means.T * counts) @ means) / n


def adaptive_shrinkage(sw: np.ndarray) -> float:
    """The reference's shrinkage: exp(-5 x (power-iteration estimate of the top eigenvalue)), floored at 1e-10."""
    x = sw.sum(axis=1)
    y = x
    for _ in range(3):
        y = sw @ x
        y = y / np.linalg.norm(y)
        x = sw @ y
        x = x / np.linalg.norm(x)
    top = float(x @ sw @ y)
    return max(float(np.exp(-5.0 * top)), 1e-10)


def shrink(sw: np.ndarray, lam: float) -> np.ndarray:
    d = sw.shape[0]
    out = (1.0 - lam) * sw
    out[np.diag_indices(d)] += lam * np.trace(sw) / d
    return out


def discriminant(means: np.ndarray, counts: np.ndarray, sw_shrunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coef [C, D], intercept [C]) of the linear discriminant with covariance ``sw_shrunk``: the class logits of a
    row x are ``x @ coef.T + intercept``."""
    import scipy.linalg  # here: importing the metric (the registry) needs no scipy

    try:
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(sw_shrunk, lower=True, check_finite=False),
                                      means.T, check_finite=False).T  # [C, D] = M S^-1
    except np.linalg.LinAlgError:  # numerically singular: least squares (the reference would fail here)
        coef = np.linalg.lstsq(sw_shrunk, means.T, rcond=None)[0].T
    intercept = -0.5 * np.einsum("cd,cd->c", coef, means) + np.log(counts / counts.sum())
    return coef, intercept


def lda_posteriors(f: np.ndarray, means: np.ndarray, counts: np.ndarray, sw_shrunk: np.ndarray) -> np.ndarray:
    """Class posteriors [N, C] of the linear discriminant with covariance ``sw_shrunk`` (all of them at once: the
    metrics take them a block of rows at a time, see :func:`true_class_posteriors`)."""
    coef, intercept = discriminant(means, counts, sw_shrunk)
    return _softmax(f @ coef.T + intercept)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def true_class_posteriors(f: np.ndarray, coef: np.ndarray, labels: np.ndarray, *shifts: np.ndarray,
                          resoftmax: bool = False) -> np.ndarray:
    """``softmax(f @ coef.T + shift_1 + ...)[i, labels[i]]`` [N] (the shifts [C] added in order), a block of rows at a
    time in one reused buffer: O(B C) memory, never [N, C]. ``resoftmax``: the true-class entry of the softmax of those
    probabilities instead (SFDA's ConfMix weight). The same arithmetic as :func:`_softmax` on all rows at once."""
    n, c = len(labels), coef.shape[0]
    out = np.empty(n)
    step = block_rows(c)
    coef_t = np.ascontiguousarray(coef.T)
    buf = np.empty((min(step, n), c))
    for s in range(0, n, step):
        rows = f[s:s + step]
        z = buf[:len(rows)]
        np.matmul(rows, coef_t, out=z)
        for shift in shifts:
            z += shift
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        total = z.sum(axis=1)
        if resoftmax:
            z /= total[:, None]
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            total = z.sum(axis=1)
        out[s:s + step] = z[np.arange(len(z)), labels[s:s + step]] / total
    return out


def first_discriminant(stats: FeatureStats, labels: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """(coef, intercept, shrinkage, class means, counts) of SFDA's first discriminant."""
    f = stats.f
    c = int(labels.max()) + 1
    means, counts = class_means(f, labels, c)
    gram = stats.gram if stats.n > stats.d else f.T @ f
    sw = within_scatter(gram, means, counts)
    lam = adaptive_shrinkage(sw)
    coef, intercept = discriminant(means, counts, shrink(sw, lam))
    return coef, intercept, lam, means, counts


def first_pass(stats: FeatureStats, labels: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(posteriors [N, C], shrinkage, class means, counts) of SFDA's first discriminant. The metrics use
    :func:`first_discriminant` and blocks of rows instead: this one holds all N x C posteriors."""
    coef, intercept, lam, means, counts = first_discriminant(stats, labels)
    return _softmax(stats.f @ coef.T + intercept), lam, means, counts


@METRICS.register(
    "sfda",
    needs="features",
    higher_is_better=True,
    paper="Shao et al., Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher "
          "Space, ECCV 2022",
    reference="TencentARC/SFDA metrics.py::SFDA_Score @ 3b7edf7",
    summary="mean true-class posterior of a shrunk Fisher discriminant refitted after ConfMix hard examples",
)
def sfda(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
         stats: FeatureStats | None = None) -> float:
    stats = stats or FeatureStats(features)
    f = stats.f
    coef, intercept, lam, means, counts = first_discriminant(stats, labels)
    c = len(counts)
    # softmax of the first pass's probabilities: weights squeezed towards 1/C
    w = true_class_posteriors(f, coef, labels, intercept, resoftmax=True)
    outer = (means.sum(0) - means) / (c - 1)  # mean of the other classes' means
    mixed = w[:, None] * f + (1.0 - w)[:, None] * outer[labels]
    means2, _ = class_means(mixed, labels, c)
    sw2 = within_scatter(mixed.T @ mixed, means2, counts)
    coef2, intercept2 = discriminant(means2, counts, shrink(sw2, lam))
    return float(np.mean(true_class_posteriors(mixed, coef2, labels, intercept2)))
