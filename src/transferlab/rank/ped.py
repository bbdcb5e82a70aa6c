"""PED: Potential Energy Decline (Li et al., "Exploring Model Transferability through the Lens of Potential Energy",
ICCV 2023). Checked against lixiaotong97/PED ``metrics.py::PED_Score`` @ e5af6e7.

Fine-tuning is simulated as a physical system: in features standardised with the *source* domain's statistics,
every class is a ball (centre: its mean; radius: the root of its summed per-dimension variance); two overlapping balls
``(nsigma (R_a + R_b) > |m_a - m_b|)`` repel each other along the line between their centres by
``min(time_step^2 constant F / 2, F)``, ``F`` the overlap. Every example moves with its class. Steps repeat (at most
6) while a step's total movement stays above ``exit_ratio`` of the first one; then a back-end metric (SFDA, or LogME)
scores the moved features. A step with no overlap at all moves nothing and ends the simulation.

Source statistics are required (the reference uses the model's features on ImageNet-val): pass ``source_mean`` and
``source_std`` (per dimension), e.g. from the zoo's model metadata. Without them the metric is not applicable (an
error, not a guess). Pairwise forces are summed a block of classes at a time: never a C x C x D array, nor a whole
C x C one.
"""

from __future__ import annotations

import numpy as np

from ..errors import MetricError
from ._registry import METRICS
from ._stats import block_rows, class_means


def simulate(features: np.ndarray, labels: np.ndarray, source_mean: np.ndarray, source_std: np.ndarray, *,
             nsigma: float = 0.6, time_step: float = 0.1, constant: float = 1.0, exit_ratio: float = 0.5,
             max_steps: int = 6, std_floor: float = 1e-3) -> tuple[np.ndarray, int]:
    """The moved features and the number of accepted steps."""
    m_g = np.asarray(source_mean, dtype=np.float64)
    s_g = np.maximum(np.asarray(source_std, dtype=np.float64), std_floor)
    x = np.asarray(features, dtype=np.float64)
    c = int(labels.max()) + 1
    first = None
    accepted = 0
    for _ in range(max_steps):
        z = (x - m_g) / s_g
        means, _ = class_means(z, labels, c)
        radius = np.sqrt(class_means(((z - means[labels]) ** 2).sum(1, keepdims=True), labels, c)[0][:, 0])
        norms = (means**2).sum(1)
        disp = np.empty_like(means)
        rows = block_rows(c)
        for a in range(0, c, rows):  # the C x C terms a block of rows (classes a..) at a time
            b = slice(a, a + rows)
            dist = np.sqrt(np.maximum(norms[b, None] + norms[None, :] - 2.0 * means[b] @ means.T, 0.0))
            force = np.maximum(abs(nsigma) * (radius[b, None] + radius[None, :]) - dist, 0.0)
            own = np.arange(len(dist))
            force[own, a + own] = 0.0
            step = np.minimum(0.5 * time_step**2 * constant * force, force)
            k = np.divide(step, dist, out=np.zeros_like(step), where=dist > 0)  # step along the unit vector
            disp[b] = k.sum(1)[:, None] * means[b] - k @ means  # sum_b k_ab (m_a - m_b)
        change = float(np.abs(disp).sum())
        if first is None:
            first = change
        if first == 0 or change / first <= exit_ratio:
            break
        x = (z + disp[labels]) * s_g + m_g
        accepted += 1
    return x, accepted


@METRICS.register(
    "ped",
    needs="features",
    higher_is_better=True,
    paper="Li et al., Exploring Model Transferability through the Lens of Potential Energy, ICCV 2023",
    reference="lixiaotong97/PED metrics.py::PED_Score @ e5af6e7",
    summary="SFDA (or LogME) after simulating the classes' repulsion; needs source-domain feature statistics",
    needs_source_stats=True,
    default=False,
)
def ped(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None, *,
        source_mean: np.ndarray | None = None, source_std: np.ndarray | None = None, backend: str = "sfda",
        nsigma: float = 0.6, time_step: float = 0.1, exit_ratio: float = 0.5, **backend_options: object) -> float:
    if source_mean is None or source_std is None:
        raise MetricError("ped is not applicable here: it needs the model's source-domain feature statistics "
                          "(source_mean, source_std), which this model does not provide")
    d = features.shape[1]
    if np.shape(source_mean) != (d,) or np.shape(source_std) != (d,):
        raise MetricError(f"ped: source_mean and source_std must have the feature dimension {d}")
    if backend not in ("sfda", "logme"):
        raise MetricError(f"ped: backend must be 'sfda' or 'logme', got {backend!r}")
    moved, _ = simulate(features, labels, source_mean, source_std, nsigma=nsigma, time_step=time_step,
                        exit_ratio=exit_ratio)
    return float(METRICS.get(backend)(moved, labels, None, **backend_options))
