"""How well a score ranks models: weighted Kendall tau (the field's headline number), Kendall tau, rel@1, and a
bootstrap confidence interval over models."""

from __future__ import annotations

from typing import Any

import numpy as np


def _paired(scores: dict[str, float | None], accuracy: dict[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    models = [m for m in accuracy if scores.get(m) is not None and np.isfinite(scores[m])
              and accuracy.get(m) is not None and np.isfinite(accuracy[m])]
    return models, np.array([scores[m] for m in models], float), np.array([accuracy[m] for m in models], float)


def weighted_tau(s: np.ndarray, a: np.ndarray) -> float | None:
    """``scipy.stats.weightedtau(score, accuracy)`` with its defaults (hyperbolic weights, the average of the two
    rankings), as the SFDA/ETran/PED evaluation scripts call it; None when undefined (< 2 models or a constant)."""
    from scipy.stats import weightedtau

    if len(s) < 2 or np.ptp(s) == 0 or np.ptp(a) == 0:
        return None
    return float(weightedtau(s, a).statistic)


def _ranks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's positions in decreasing lexicographic order by (x, y), exact ties in reverse index order: the
    rank scipy's weightedtau gives (``perm = lexsort((y, x))[::-1]``, inverted)."""
    perm = np.lexsort((y, x), axis=-1)[:, ::-1]
    r = np.empty_like(perm)
    np.put_along_axis(r, perm, np.broadcast_to(np.arange(x.shape[1]), x.shape).copy(), axis=-1)
    return r


def _ranked_tau(x: np.ndarray, y: np.ndarray, r: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Vigna's additive hyperbolic weighted τ of each row, the pair weights from ranks ``r``, over valid pairs."""
    w = 1.0 / (r + 1.0)
    pair_w = w[:, :, None] + w[:, None, :]
    both = valid[:, :, None] & valid[:, None, :]
    sx = np.where(both, np.sign(x[:, :, None] - x[:, None, :]), 0.0)
    sy = np.where(both, np.sign(y[:, :, None] - y[:, None, :]), 0.0)
    num = (pair_w * sx * sy).sum((1, 2))
    dx, dy = (pair_w * (sx != 0)).sum((1, 2)), (pair_w * (sy != 0)).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((dx > 0) & (dy > 0), num / np.sqrt(dx * dy), np.nan)


def weighted_tau_rows(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    """:func:`weighted_tau` of every row of ``s`` against the same row of ``a`` (2-D arrays), over the entries finite
    in both, in one vectorised pass (a bootstrap's thousands of small τ: scipy's call costs ~1 ms each); NaN where
    undefined. Equal to scipy's to 1e-15, ties and missing entries included (tests/bench/test_evidence.py)."""
    valid = np.isfinite(s) & np.isfinite(a)
    xs, ys = np.where(valid, s, 0.0), np.where(valid, a, 0.0)
    x, y = np.where(valid, s, -np.inf), np.where(valid, a, -np.inf)  # invalid entries rank last
    return (_ranked_tau(xs, ys, _ranks(x, y), valid) + _ranked_tau(xs, ys, _ranks(y, x), valid)) / 2


def kendall_tau(s: np.ndarray, a: np.ndarray) -> float | None:
    from scipy.stats import kendalltau

    if len(s) < 2 or np.ptp(s) == 0 or np.ptp(a) == 0:
        return None
    return float(kendalltau(s, a).statistic)


def rel_at_1(s: np.ndarray, a: np.ndarray) -> float | None:
    """Accuracy of the top-scored model divided by the best accuracy (ties in score: the first model listed)."""
    if len(s) == 0 or np.max(a) <= 0:
        return None
    return float(a[int(np.argmax(s))] / np.max(a))


def rank_quality(scores: dict[str, float | None], accuracy: dict[str, float], *, n_boot: int = 1000,
                 seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """Weighted tau, Kendall tau and rel@1 of ``scores`` against ground-truth ``accuracy`` (both keyed by model),
    with a percentile bootstrap interval of the weighted tau over models (resamples with fewer than 3 distinct
    models are skipped; every resample's τ in one vectorised pass, :func:`weighted_tau_rows`). Models without a
    score or accuracy are left out (``n`` says how many remain)."""
    models, s, a = _paired(scores, accuracy)
    out: dict[str, Any] = {"n": len(models), "weighted_tau": weighted_tau(s, a), "kendall_tau": kendall_tau(s, a),
                           "rel_at_1": rel_at_1(s, a), "top_model": models[int(np.argmax(s))] if models else None,
                           "weighted_tau_ci": None}
    if len(models) >= 3 and n_boot > 0:
        idx = np.random.default_rng(seed).integers(0, len(models), (n_boot, len(models)))
        idx = idx[[len(np.unique(row)) >= 3 for row in idx]]
        taus = weighted_tau_rows(s[idx], a[idx]) if len(idx) else np.empty(0)
        taus = taus[np.isfinite(taus)]
        if len(taus):
            lo, hi = np.quantile(taus, [(1 - ci) / 2, 1 - (1 - ci) / 2])
            out["weighted_tau_ci"] = [float(lo), float(hi)]
    return out


def random_baseline(accuracy: dict[str, float], *, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """What random scores achieve: the mean weighted tau, Kendall tau and rel@1 over ``n`` random scorings, and the
    central 95 % of the weighted tau."""
    rng = np.random.default_rng(seed)
    models = list(accuracy)
    a = np.array([accuracy[m] for m in models], float)
    wt, kt, r1 = [], [], []
    for _ in range(n):
        s = rng.random(len(models))
        wt.append(weighted_tau(s, a))
        kt.append(kendall_tau(s, a))
        r1.append(rel_at_1(s, a))
    wt_f = [t for t in wt if t is not None]
    return {"n": len(models), "weighted_tau": float(np.mean(wt_f)) if wt_f else None,
            "kendall_tau": float(np.mean([t for t in kt if t is not None])) if wt_f else None,
            "rel_at_1": float(np.mean([r for r in r1 if r is not None])) if r1 else None, "top_model": None,
            "weighted_tau_ci": [float(v) for v in np.quantile(wt_f, [0.025, 0.975])] if wt_f else None}
