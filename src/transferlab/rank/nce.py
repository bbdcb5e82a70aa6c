"""NCE: Negative Conditional Entropy (Tran, Nguyen, Hassner, ICCV 2019).

Source labels are the argmax of the source head's probabilities. Checked against thuml/LogME ``NCE.py``
(identical to TLlib ``nce.py``); the reference adds 1e-20 inside the log, we skip empty cells instead.
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS


@METRICS.register(
    "nce",
    needs="source_probs",
    higher_is_better=True,
    paper="Tran et al., Transferability and Hardness of Supervised Classification Tasks, ICCV 2019",
    reference="thuml/LogME NCE.py @ 56551ca",
    summary="minus the conditional entropy H(Y | Z) of target labels given source argmax labels",
)
def nce(features: np.ndarray | None, labels: np.ndarray, source_probs: np.ndarray | None = None) -> float:
    """``-H(Y|Z)`` in nats from the hard joint table of (target label, source argmax)."""
    z = np.argmax(source_probs, axis=1)
    n = len(labels)
    c = int(labels.max()) + 1
    cs = source_probs.shape[1]
    joint = np.bincount(labels * cs + z, minlength=c * cs).reshape(c, cs) / n
    pz = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    cond = np.divide(joint, pz, out=np.ones_like(joint), where=pz > 0)
    return float(np.sum(joint[nz] * np.log(cond[nz])))
