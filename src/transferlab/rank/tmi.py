"""TMI: transferability as intra-class feature variance (Xu & Kang, "Fast and Accurate Transferability Measurement
by Evaluating Intra-class Feature Variance", ICCV 2023).

The score is the conditional entropy ``H(X|Y) = sum_c p(c) H(X | Y = c)``, each class's differential entropy
estimated by the Kozachenko-Leonenko k-nearest-neighbour estimator with the maximum norm:
``H_c = psi(n_c) - psi(k) + D * mean_i log(2 r_i)``, ``r_i`` the max-norm distance from example i to its k-th
neighbour within its class. A larger within-class spread means a more adaptable representation (the paper's thesis).

Written from the paper: its reference code (snudatalab/TMI) carries a non-commercial licence, so nothing was taken
from it and no test vectors come from it. Two choices are ours and are options: features are L2-normalised per
example first (``normalize``) and the entropy is reported per dimension (``per_dimension``), so models with different
feature scales and widths compare (the raw estimate grows with D log(scale)). ``normalize=False, per_dimension=False``
gives the raw estimator.
"""

from __future__ import annotations

import numpy as np

from ..errors import MetricError
from ._registry import METRICS


def knn_entropy(x: np.ndarray, k: int = 3, block: int = 256) -> float:
    """Kozachenko-Leonenko differential entropy (nats) of the distinct rows of ``x`` with the max norm (exact
    duplicates would put a zero distance inside a logarithm; they say nothing about spread)."""
    from scipy.spatial.distance import cdist
    from scipy.special import digamma

    if len(x) > 1:  # the distinct rows in lexicographic order, as np.unique(axis=0) gives them, at a tenth of its
        x = x[np.lexsort(x.T[::-1])]  # cost per call (it runs once per class)
        x = x[np.concatenate([[True], np.any(x[1:] != x[:-1], axis=1)])]
    n, d = x.shape
    if n <= k:
        raise MetricError(f"tmi needs more than k={k} distinct examples in every class, a class has {n}")
    r = np.empty(n)
    for s in range(0, n, block):  # brute force in blocks: trees do not help in hundreds of dimensions
        dist = cdist(x[s:s + block], x, "chebyshev")
        r[s:s + block] = np.partition(dist, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)
    return float(digamma(n) - digamma(k) + d * np.mean(np.log(2.0 * r)))


@METRICS.register(
    "tmi",
    needs="features",
    higher_is_better=True,
    paper="Xu & Kang, Fast and Accurate Transferability Measurement by Evaluating Intra-class Feature Variance, "
          "ICCV 2023",
    reference="none (implemented from the paper; the reference code is under a non-commercial licence)",
    summary="intra-class feature entropy H(X|Y), kNN (Kozachenko-Leonenko) estimate per class",
)
def tmi(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *, k: int = 3,
        normalize: bool = True, per_dimension: bool = True) -> float:
    f = np.asarray(features, dtype=np.float64)
    if normalize:
        norms = np.linalg.norm(f, axis=1, keepdims=True)
        f = f / np.where(norms > 0, norms, 1.0)
    counts = np.bincount(labels)
    order = np.argsort(labels, kind="stable")  # each class's rows, in their order: one sort, no N x C comparisons
    starts = np.concatenate([[0], np.cumsum(counts)])
    h = sum(counts[c] / len(labels) * knn_entropy(f[order[starts[c]:starts[c + 1]]], k)
            for c in np.flatnonzero(counts))
    return float(h / f.shape[1] if per_dimension else h)
