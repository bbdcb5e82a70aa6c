"""Ensemble selection: K source models that transfer well *together*.

Our design (inspired by OSBORN, "Building a Winning Team", ICCV 2023, which has no public code; this is not its
objective): a quality-diversity determinantal objective, maximised greedily.

- **Quality** ``q_m``: how well model m transfers alone, ``q_m = 1 - c_m`` with ``c_m`` its consensus position over
  the metrics (0 = first everywhere, 1 = last), floored at 0.05.
- **Similarity** ``S_mn``: linear CKA (Kornblith et al., ICML 2019) between the two models' target features, on a
  class-stratified subsample. CKA is a cosine between centred Gram matrices, so S is positive semi-definite, and two
  models that represent the target the same way have S near 1.
- **Objective** ``f(T) = log det(I + theta L_T)`` with ``L = diag(q) S diag(q)``: it grows with each member's quality
  and shrinks when members are redundant (it is the log-volume their quality-scaled representations span). ``f`` is
  monotone submodular (L is PSD), so greedy selection is within (1 - 1/e) of the best set of size K (Nemhauser et
  al. 1978). ``theta`` (default 4) sets how much quality counts against redundancy.

Complementary models are those with *different* representations of the target; cohesive ones are those that are each
good on it: the determinant needs both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TransferlabError


def centred_gram(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0)
    g = f @ f.T
    return g


def linear_cka_matrix(features: list[np.ndarray]) -> np.ndarray:
    """Linear CKA between every pair of feature matrices (same rows, any widths), via centred Gram matrices."""
    grams = [centred_gram(f) for f in features]
    vecs = np.stack([g.ravel() for g in grams])
    norms = np.linalg.norm(vecs, axis=1)
    norms = np.where(norms > 0, norms, 1.0)
    unit = vecs / norms[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


@dataclass
class EnsembleChoice:
    models: list[str]  # in the order chosen
    gains: list[float]  # objective gain of each pick
    quality: dict[str, float]
    similarity: dict[str, dict[str, float]]  # CKA between every pair of candidates
    theta: float
    objective: str = "log det(I + theta diag(q) CKA diag(q)), greedy"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"models": self.models, "gains": self.gains, "quality": self.quality, "similarity": self.similarity,
                "theta": self.theta, "objective": self.objective, "notes": self.notes}


def select_ensemble(features: dict[str, np.ndarray], quality: dict[str, float], k: int, *,
                    theta: float = 4.0) -> EnsembleChoice:
    """Greedy maximisation of ``log det(I + theta L_T)`` over sets T of ``k`` candidates (see module doc).

    ``features``: each candidate's target features on the same examples (a subsample is enough); ``quality``: each
    candidate's transferability in [0, 1] (higher is better)."""
    names = [m for m in features if m in quality]
    if k < 1:
        raise TransferlabError(f"--ensemble must be at least 1, got {k}")
    if k > len(names):
        raise TransferlabError(f"cannot choose an ensemble of {k} from {len(names)} scored models")
    sim = linear_cka_matrix([features[m] for m in names])
    q = np.array([max(float(quality[m]), 0.05) for m in names])
    big_l = theta * (q[:, None] * sim * q[None, :])
    chosen: list[int] = []
    gains: list[float] = []
    current = 0.0
    for _ in range(k):
        best, best_val = -1, -np.inf
        for i in range(len(names)):
            if i in chosen:
                continue
            idx = chosen + [i]
            sign, val = np.linalg.slogdet(np.eye(len(idx)) + big_l[np.ix_(idx, idx)])
            if sign > 0 and val > best_val + 1e-12:
                best, best_val = i, val
        chosen.append(best)
        gains.append(float(best_val - current))
        current = best_val
    return EnsembleChoice(
        models=[names[i] for i in chosen], gains=gains, quality={m: float(v) for m, v in zip(names, q, strict=True)},
        similarity={a: {b: float(sim[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
        theta=theta)
