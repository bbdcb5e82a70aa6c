"""ETran (Gholami et al., "ETran: Energy-Based Transferability Estimation", ICCV 2023), component by component.
Checked against mgholamikn/ETran ``metrics.py`` (``Energy_Score``, ``LDA_Score``) @ d4551ed.

- ``etran_energy``: the mean ``logsumexp`` of the features over the ``percent`` % examples with the lowest value
  (the reference passes the penultimate features as "logits"). The reference averages an empty slice (NaN) when
  ``percent`` % of N is below one example (N < 200 at 0.5 %); we take at least one example.
- ``etran_lda``: the mean true-class posterior of the reference's linear discriminant. The reference calls ``eigh``
  on the non-symmetric ``S_w^-1 S_b``, which returns orthonormal vectors, so its discriminant reduces exactly to
  ``softmax_c(x^T mu_c - |mu_c|^2 / 2 + log pi_c)`` (identity covariance); that is what the published numbers used and
  what ``lda="reference"`` computes. ``lda="fisher"`` uses the shrunk Fisher discriminant the paper describes (SFDA's
  first pass).
- ``etran``: ``0.15 energy + 0.85 lda`` as the reference combines them. The reference min-max normalises each
  component across the candidate pool first, which makes a model's score depend on the others; we do not (a pool
  normalisation can be computed from the two component metrics over a ranking), so the raw sum is dominated by the
  energy term's scale. Prefer the components.

No SVD/regression component exists in the public code (its ``_solve_eigen2`` is never called), so none is offered.
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._stats import FeatureStats

_PAPER = "Gholami et al., ETran: Energy-Based Transferability Estimation, ICCV 2023"
_REF = "mgholamikn/ETran metrics.py @ d4551ed"


def _logsumexp_rows(f: np.ndarray) -> np.ndarray:
    m = f.max(axis=1)
    z = f - m[:, None]
    np.exp(z, out=z)
    return m + np.log(z.sum(axis=1))


def energy(features: np.ndarray, percent: float = 0.5, tail: str = "bottom") -> float:
    e = np.sort(_logsumexp_rows(np.asarray(features, dtype=np.float64)))
    k = max(1, int(np.floor(percent / 100.0 * len(e) + 1e-9)) if tail == "bottom"
            else int(np.ceil(percent / 100.0 * len(e) - 1e-9)))
    return float(np.mean(e[:k] if tail == "bottom" else e[-k:]))


def lda_score(stats: FeatureStats, labels: np.ndarray, lda: str = "reference") -> float:
    """Mean true-class posterior, a block of rows at a time (never the [N, C] posteriors)."""
    from ._stats import class_means
    from .sfda import first_discriminant, true_class_posteriors

    f = stats.f
    if lda == "fisher":
        coef, intercept = first_discriminant(stats, labels)[:2]
        p = true_class_posteriors(f, coef, labels, intercept)
    elif lda == "reference":
        means, counts = class_means(f, labels)
        p = true_class_posteriors(f, means, labels, -0.5 * (means**2).sum(1), np.log(counts / counts.sum()))
    else:
        from ..errors import MetricError

        raise MetricError(f"etran: lda must be 'reference' or 'fisher', got {lda!r}")
    return float(np.mean(p))


@METRICS.register("etran_energy", needs="features", higher_is_better=True, paper=_PAPER, reference=_REF,
                  summary="ETran energy: mean logsumexp of the features over the lowest 0.5 % of examples")
def etran_energy(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
                 percent: float = 0.5, tail: str = "bottom") -> float:
    return energy(features, percent, tail)


@METRICS.register("etran_lda", needs="features", higher_is_better=True, paper=_PAPER, reference=_REF,
                  summary="ETran LDA: mean true-class posterior of its linear discriminant")
def etran_lda(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
              lda: str = "reference", stats: FeatureStats | None = None) -> float:
    return lda_score(stats or FeatureStats(features), labels, lda)


@METRICS.register("etran", needs="features", higher_is_better=True, paper=_PAPER, reference=_REF,
                  summary="0.15 energy + 0.85 LDA (no pool min-max; see etran_energy, etran_lda)")
def etran(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
          percent: float = 0.5, lda: str = "reference", energy_weight: float = 0.15,
          stats: FeatureStats | None = None) -> float:
    stats = stats or FeatureStats(features)
    return energy_weight * energy(stats.f, percent) + (1 - energy_weight) * lda_score(stats, labels, lda)
