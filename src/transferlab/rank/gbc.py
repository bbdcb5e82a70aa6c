"""GBC: Gaussian Bhattacharyya Coefficient (Pándy et al., "Transferability Estimation using Bhattacharyya Class
Separability", CVPR 2022). Checked against google-research ``stable_transfer/transferability/gbc.py``
``get_gbc_score`` @ 1d4d2f1.

Each class is a Gaussian with its mean and per-dimension population variance (floored at 1e-4); ``spherical`` averages
the variances to one scalar per class. GBC ``= -sum_{a != b} exp(-BD(a, b))`` over ordered class pairs, with
``BD = 1/8 sum_d (mu_a - mu_b)_d^2 / s_d + 1/2 (sum log s - 1/2 sum log s_a - 1/2 sum log s_b)``, ``s = (s_a + s_b)/2``.
As in the reference, the spherical log term is over the scalar variances (not multiplied by D).

The reference's experiments first reduce features to 64 principal components (``pca=64``, our default): without it,
GBC improves as noise dimensions are added. ``pca=None`` gives the reference function on raw features.
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._stats import FeatureStats, block_rows, class_means

VAR_FLOOR = 1e-4


def pca_project(stats: FeatureStats, k: int) -> np.ndarray:
    """The centred features on their top-k principal axes (signs arbitrary; GBC does not depend on them)."""
    if k >= min(stats.n, stats.d):
        return stats.f - stats.mean
    return (stats.f - stats.mean) @ stats.cov_spectrum.top_vectors(k)  # the spectrum H-score/TransRate share


def gbc_from_features(f: np.ndarray, labels: np.ndarray, gaussian_type: str = "spherical",
                      block: int | None = None) -> float:
    """GBC of the rows of ``f``. The C x C coefficients are summed a block of ``block`` classes (rows) at a time:
    memory O(block C) (spherical) or O(block C D) (diagonal), never C x C; by default a block holds at most
    ``BLOCK_ELEMENTS`` values."""
    c = int(labels.max()) + 1
    mu, _ = class_means(f, labels, c)
    var = np.maximum(class_means((f - mu[labels]) ** 2, labels, c)[0], VAR_FLOOR)  # population variances
    total = 0.0
    if gaussian_type == "spherical":
        s = var.mean(axis=1)  # [C]
        sq = (mu**2).sum(1)
        logs = np.log(s)
        step = block or block_rows(c)
        for a in range(0, c, step):
            b = slice(a, a + step)
            d2 = np.maximum(sq[b, None] + sq[None, :] - 2.0 * mu[b] @ mu.T, 0.0)
            avg = 0.5 * (s[b, None] + s[None, :])
            bd = d2 / (8.0 * avg) + 0.5 * (np.log(avg) - 0.5 * (logs[b, None] + logs[None, :]))
            total += _off_diagonal_sum(np.exp(-bd), a)
    elif gaussian_type == "diagonal":
        logdet = np.log(var).sum(1)
        step = block or block_rows(c * mu.shape[1])
        for a in range(0, c, step):  # [block, C, D] at a time: no C x C x D array
            avg = 0.5 * (var[a:a + step, None, :] + var[None, :, :])
            diff2 = (mu[a:a + step, None, :] - mu[None, :, :]) ** 2
            bd = (diff2 / avg).sum(-1) / 8.0 + 0.5 * (
                np.log(avg).sum(-1) - 0.5 * (logdet[a:a + step, None] + logdet[None, :]))
            total += _off_diagonal_sum(np.exp(-bd), a)
    else:
        from ..errors import MetricError

        raise MetricError(f"gbc: gaussian_type must be 'spherical' or 'diagonal', got {gaussian_type!r}")
    return float(-total)


def _off_diagonal_sum(coef: np.ndarray, first: int) -> float:
    """Sum of rows ``first ..`` of a C x C matrix of coefficients, without their diagonal entries."""
    rows = np.arange(len(coef))
    coef[rows, first + rows] = 0.0
    return float(coef.sum())


@METRICS.register(
    "gbc",
    needs="features",
    higher_is_better=True,
    paper="Pándy et al., Transferability Estimation using Bhattacharyya Class Separability, CVPR 2022",
    reference="google-research stable_transfer/transferability/gbc.py::get_gbc_score @ 1d4d2f1",
    summary="minus the summed Bhattacharyya overlap of per-class Gaussians (after PCA to 64 dims)",
)
def gbc(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
        gaussian_type: str = "spherical", pca: int | None = 64, stats: FeatureStats | None = None) -> float:
    stats = stats or FeatureStats(features)
    f = pca_project(stats, pca) if pca else stats.f
    return gbc_from_features(f, labels, gaussian_type)
