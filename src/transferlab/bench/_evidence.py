"""How far a ranking's agreement with the ground truth can be trusted, on the user's own pool.

- **Δτw over the best prior**: each score's mean weighted τ over the targets minus that of the best trivial prior
  (parameter count, source or ImageNet accuracy, FLOPs: :mod:`._priors`), with a percentile bootstrap interval. Each
  resample draws the models (and the targets, when there are several) with replacement, the same draw for every
  score and prior, and takes the best prior *in that resample*, so choosing the best prior after the fact is part
  of the interval. An interval above 0 is a margin the data supports.
- **The noise ceiling**: the weighted τ between ground truths fitted with different seeds (``--replicates``), with
  the same bootstrap: how well the ground truth agrees with itself. A score is compared with it through its τw
  against one replicate (the mean over the replicates), so both sides rank against one noisy fit; a score whose τw
  reaches the ceiling's interval is as good as the ground truth can tell.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

import numpy as np

from ._quality import weighted_tau_rows

Sample = tuple[np.ndarray, np.ndarray]  # (model indices, target indices)


def as_matrix(values: dict[str, dict[str, float | None]], targets: list[str], models: list[str]) -> np.ndarray:
    """target -> model -> value as a (targets, models) array, NaN where a value is missing."""
    out = np.full((len(targets), len(models)), np.nan)
    for i, t in enumerate(targets):
        for j, m in enumerate(models):
            v = (values.get(t) or {}).get(m)
            if v is not None:
                out[i, j] = float(v)
    return out


def resamples(n_models: int, n_targets: int, n_boot: int, seed: int) -> list[Sample]:
    """``n_boot`` draws of the models (and of the targets, when there are several) with replacement; draws with fewer
    than 3 distinct models are left out."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        m = rng.integers(0, n_models, n_models)
        t = rng.integers(0, n_targets, n_targets) if n_targets > 1 else np.zeros(1, dtype=int)
        if len(np.unique(m)) >= 3:
            out.append((m, t))
    return out


def sample_taus(s: np.ndarray, a: np.ndarray, samples: list[Sample]) -> np.ndarray:
    """Per sample: the mean over its drawn targets of the weighted τ of scores ``s`` against accuracies ``a`` (both
    (targets, models)), each over the models that have both; NaN where no target gives one."""
    if not samples:
        return np.empty(0)
    m_idx = np.stack([m for m, _ in samples])[:, None, :]
    t_idx = np.stack([t for _, t in samples])[:, :, None]
    rows_s, rows_a = s[t_idx, m_idx], a[t_idx, m_idx]  # (samples, targets drawn, models)
    taus = weighted_tau_rows(rows_s.reshape(-1, rows_s.shape[-1]),
                             rows_a.reshape(-1, rows_a.shape[-1])).reshape(rows_s.shape[:2])
    n = np.isfinite(taus).sum(1)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, np.nansum(taus, 1) / np.maximum(n, 1), np.nan)


def mean_tau(s: np.ndarray, a: np.ndarray) -> float | None:
    """:func:`sample_taus` on the whole data (every model, every target once); None when undefined."""
    v = sample_taus(s, a, [(np.arange(s.shape[1]), np.arange(s.shape[0]))])[0]
    return None if np.isnan(v) else float(v)


def _interval(values: np.ndarray, ci: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = np.quantile(values, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return [float(lo), float(hi)]


def delta_over_priors(scores: dict[str, np.ndarray], priors: dict[str, np.ndarray], truth: np.ndarray, *,
                      n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict[str, Any] | None:
    """Per score: Δτw = its mean τw minus the best prior's, and its bootstrap interval (module docstring); None when
    no prior has a τw."""
    full = {p: mean_tau(v, truth) for p, v in priors.items()}
    known = {p: t for p, t in full.items() if t is not None}
    if not known:
        return None
    best = max(known.items(), key=lambda kv: kv[1])
    samples = resamples(truth.shape[1], truth.shape[0], n_boot, seed)
    prior_taus = np.stack([sample_taus(priors[p], truth, samples) for p in known])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no prior has a τw: NaN, left out
        best_b = np.nanmax(prior_taus, 0)
    out = {}
    for name, s in scores.items():
        tau = mean_tau(s, truth)
        out[name] = {"weighted_tau": tau, "delta": None if tau is None else tau - best[1],
                     "ci": _interval(sample_taus(s, truth, samples) - best_b, ci)}
    return {"best_prior": best[0], "best_prior_tau": best[1], "priors": full, "n_boot": len(samples),
            "resampled": "models and targets" if truth.shape[0] > 1 else "models", "scores": out}


def noise_ceiling(replicates: list[np.ndarray], *, n_boot: int = 1000, seed: int = 0,
                  ci: float = 0.95) -> dict[str, Any] | None:
    """The mean weighted τ between the replicate ground truths (over every pair of replicates), per target and over
    the targets, with its bootstrap interval; None with fewer than 2 replicates."""
    pairs = list(combinations(range(len(replicates)), 2))
    if not pairs:
        return None
    n_targets, n_models = replicates[0].shape

    def tau(samples: list[Sample]) -> np.ndarray:
        taus = np.stack([sample_taus(replicates[i], replicates[j], samples) for i, j in pairs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sample without a τw: NaN
            return np.nanmean(taus, 0)

    whole = tau([(np.arange(n_models), np.arange(n_targets))])[0]
    per_target = tau([(np.arange(n_models), np.array([t])) for t in range(n_targets)])
    boots = tau(resamples(n_models, n_targets, n_boot, seed))
    return {"weighted_tau": None if np.isnan(whole) else float(whole),
            "per_target": [None if np.isnan(v) else float(v) for v in per_target], "ci": _interval(boots, ci),
            "n_boot": int(np.isfinite(boots).sum()), "replicates": len(replicates)}


def _mean_over_replicates(s: np.ndarray, replicates: list[np.ndarray]) -> float | None:
    taus = [t for rep in replicates if (t := mean_tau(s, rep)) is not None]
    return float(np.mean(taus)) if taus else None


def against_ceiling(scores: dict[str, np.ndarray], replicates: list[np.ndarray],
                    ceiling: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per score: its weighted τ against one replicate ground truth (the mean over the replicates), that as a
    fraction of the ceiling, and whether it reaches the ceiling's interval."""
    c, ci = ceiling.get("weighted_tau"), ceiling.get("ci")
    out = {}
    for name, s in scores.items():
        tau = _mean_over_replicates(s, replicates)
        per_target = [_mean_over_replicates(s[t:t + 1], [rep[t:t + 1] for rep in replicates])
                      for t in range(s.shape[0])]
        out[name] = {"weighted_tau": tau, "per_target": per_target,
                     "fraction": None if tau is None or not c or c <= 0 else tau / c,
                     "within": None if tau is None or not ci else bool(tau >= ci[0])}
    return out


def rank_evidence(scores: dict[str, dict[str, dict[str, float | None]]],
                  priors: dict[str, dict[str, float] | None], truth: dict[str, dict[str, float | None]],
                  replicates: list[dict[str, dict[str, float | None]]] | None, models: list[str], *,
                  n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """bench rank's evidence: ``prior_delta`` (:func:`delta_over_priors`), and with 2+ replicates ``noise_ceiling``
    and ``against_ceiling``. ``scores``: name -> target -> model -> score; ``priors``: name -> model -> value
    (missing values already ranked last, :func:`._priors.filled`; None: no value at all)."""
    targets = list(truth)
    a = as_matrix(truth, targets, models)
    s = {name: as_matrix(v, targets, models) for name, v in scores.items()}
    p = {name: as_matrix({t: v for t in targets}, targets, models) for name, v in priors.items() if v is not None}
    out: dict[str, Any] = {"prior_delta": delta_over_priors(s, p, a, n_boot=n_boot, seed=seed),
                           "noise_ceiling": None, "against_ceiling": None}
    if replicates and len(replicates) > 1:
        reps = [as_matrix(r, targets, models) for r in replicates]
        ceiling = noise_ceiling(reps, n_boot=n_boot, seed=seed)
        out["noise_ceiling"] = ceiling
        out["against_ceiling"] = against_ceiling(s, reps, ceiling) if ceiling else None
    return out
