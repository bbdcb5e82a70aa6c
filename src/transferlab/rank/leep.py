"""LEEP: Log Expected Empirical Prediction (Nguyen, Hassner, Seeger, Archambeau, ICML 2020).

Checked against thuml/LogME ``LEEP.py`` (identical to TLlib ``tllib/ranking/leep.py``).
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._validate import one_hot


@METRICS.register(
    "leep",
    needs="source_probs",
    higher_is_better=True,
    paper="Nguyen et al., LEEP, ICML 2020",
    reference="thuml/LogME LEEP.py @ 56551ca",
    summary="mean log-likelihood of the empirical source-to-target label predictor",
)
def leep(features: np.ndarray | None, labels: np.ndarray, source_probs: np.ndarray | None = None) -> float:
    """Mean over examples of ``log sum_z P(y_i | z) theta_z(x_i)``, with ``P(y|z)`` from the soft joint table."""
    theta = source_probs
    n = len(labels)
    c = int(labels.max()) + 1
    joint = one_hot(labels, c).T @ theta / n  # [C, Cs]
    marginal = joint.sum(axis=0, keepdims=True)
    cond = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    eep = np.einsum("nz,nz->n", theta, cond[labels])
    return float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny))))
