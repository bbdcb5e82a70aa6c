"""LEEP: Log Expected Empirical Prediction (Nguyen, Hassner, Seeger, Archambeau, ICML 2020).

Checked against thuml/LogME ``LEEP.py`` (identical to TLlib ``tllib/ranking/leep.py``).
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._stats import block_rows, class_sums


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
    joint = class_sums(theta, labels, c) / n  # [C, Cs], O(N Cs): no [N, C] one-hot
    marginal = joint.sum(axis=0, keepdims=True)
    cond = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    eep = np.empty(n)
    step = block_rows(theta.shape[1])
    for s in range(0, n, step):  # cond[labels] a block of rows at a time
        eep[s:s + step] = np.einsum("nz,nz->n", theta[s:s + step], cond[labels[s:s + step]])
    return float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny))))
