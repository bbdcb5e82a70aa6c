"""NCE: Negative Conditional Entropy (Tran, Nguyen, Hassner, ICCV 2019).

Source labels are the argmax of the source head's probabilities. Checked against thuml/LogME ``NCE.py``
(identical to TLlib ``nce.py``); the reference adds 1e-20 inside the log, we skip empty cells instead.
"""

from __future__ import annotations

import numpy as np

from ._registry import METRICS
from ._validate import ProbStats


@METRICS.register(
    "nce",
    needs="source_probs",
    higher_is_better=True,
    paper="Tran et al., Transferability and Hardness of Supervised Classification Tasks, ICCV 2019",
    reference="thuml/LogME NCE.py @ 56551ca",
    summary="minus the conditional entropy H(Y | Z) of target labels given source argmax labels",
)
def nce(features: np.ndarray | None, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
        stats: ProbStats | None = None) -> float:
    """``-H(Y|Z)`` in nats from the hard joint table of (target label, source argmax). ``stats``: the argmax already
    taken while the probabilities were validated (one pass over them instead of two)."""
    z = stats.argmax if stats is not None else np.argmax(source_probs, axis=1)
    n = len(labels)
    cs = source_probs.shape[1]
    # the non-empty cells of the C x Cs joint table only (at most N of them), in row-major order
    cells, cell_counts = np.unique(labels * cs + z, return_counts=True)
    joint = cell_counts / n
    source = cells % cs
    pz = np.bincount(source, weights=joint, minlength=cs)  # P(z): column sums of the joint table
    return float(np.sum(joint * np.log(joint / pz[source])))
