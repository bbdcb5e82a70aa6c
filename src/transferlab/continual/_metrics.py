"""Continual-learning metrics from the accuracy matrix (Lopez-Paz & Ranzato, GEM, NeurIPS 2017).

R[i, j]: accuracy on task j's test split after training task i (0-based here); b[j]: accuracy before any training.
ACC = mean_j R[T−1, j]; BWT = mean_{j<T−1} (R[T−1, j] − R[j, j]); FWT = mean_{j≥1} (R[j−1, j] − b[j]); forgetting of
task j < T−1: max_{i<T−1} R[i, j] − R[T−1, j] (Chaudhry et al., 2018).

Avalanche (ContinualAI/avalanche) reports BWT as −forgetting with forgetting = (accuracy just after training the
task) − (final accuracy), averaged over the tasks it has seen: the same number as GEM's BWT. The ExSSNeT code's
"BWT" is final − maximum accuracy (−forgetting above), which differs from GEM's whenever a task's accuracy peaks after
it was trained."""

from __future__ import annotations

from typing import Any

import numpy as np


def summary(r: np.ndarray, b: np.ndarray | None) -> dict[str, Any]:
    """ACC, BWT, FWT and per-task forgetting of a T×T accuracy matrix (FWT None without ``b``)."""
    r = np.asarray(r, dtype=np.float64)
    t = r.shape[0]
    if r.shape != (t, t):
        raise ValueError(f"the accuracy matrix must be square, got {r.shape}")
    last = r[t - 1]
    acc = float(last.mean())
    bwt = float(np.mean([last[j] - r[j, j] for j in range(t - 1)])) if t > 1 else None
    fwt = float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)])) if b is not None and t > 1 else None
    forgetting = [float(r[: t - 1, j].max() - last[j]) for j in range(t - 1)]
    return {"acc": acc, "bwt": bwt, "fwt": fwt, "forgetting": forgetting,
            "mean_forgetting": float(np.mean(forgetting)) if forgetting else None,
            "exssnet_bwt": float(np.mean([last[j] - r[:, j].max() for j in range(t - 1)])) if t > 1 else None}
