"""The downstream scaling law of Isik et al., "Scaling Laws for Downstream Task Performance of Large Language Models"
(arXiv 2402.04177, 2024), fitted and checked on a held-back point.

The paper proposes two laws in the pretraining data size :math:`D_p` at a fixed fine-tuning set: for a translation
*quality* score (BLEU, COMET) the log law

    f(D_p) = (log(A · D_p^α))^β

and for the downstream *cross-entropy* L(D_p) = E + A / D_p^α (its Figure 9 and Section 3; one fit per fine-tuning
set size). Accuracy is a quality score that grows with :math:`D_p` (higher is better, like BLEU), so
``bench scaling`` fits the log law; the cross-entropy law is not fitted (the bench measures accuracy, not the
downstream loss). The logarithm is natural. With ``c = log A`` the law is ``(c + α·log D)^β``: it is fitted in
``(c, α, β)`` (better conditioned than ``A``, which spans orders of magnitude) by least squares
(``scipy.optimize.curve_fit``) from several starts, each the exact straight-line fit of ``y^(1/β0)`` against
``log D`` for one ``β0``; the fit with the smallest squared error is kept. Three parameters: a fit on three distinct
sizes passes through their means (it interpolates); a fourth size gives the law something to be wrong about."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TransferlabError

LAW = "(log(A · D^α))^β"
_BETA_STARTS = (0.5, 1.0, 2.0, 4.0)
_TINY = 1e-12  # the base of the power is kept positive while the optimiser explores


def log_law(d: Any, a: float, alpha: float, beta: float) -> np.ndarray:
    """The log law ``(log(A · D^α))^β`` (natural logarithm) at ``d`` (NaN where ``log(A · D^α) <= 0``)."""
    base = math.log(a) + alpha * np.log(np.asarray(d, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        return np.where(base > 0, np.abs(base) ** beta, np.nan)


def _law(x: np.ndarray, c: float, alpha: float, beta: float) -> np.ndarray:
    """The law in ``x = log D`` and ``c = log A``, its base clipped above 0 (what the optimiser sees)."""
    return np.maximum(c + alpha * x, _TINY) ** beta


@dataclass(frozen=True)
class LawFit:
    """A fitted log law: ``log_a`` (= log A), ``alpha``, ``beta``; the root-mean-square residual on the points fitted,
    how many points and how many distinct sizes."""

    log_a: float
    alpha: float
    beta: float
    rmse: float
    n_points: int
    n_sizes: int

    @property
    def a(self) -> float:
        return math.exp(self.log_a)

    def predict(self, d: Any) -> np.ndarray:
        """The fitted law at ``d`` (an accuracy; it is not capped at 1)."""
        return _law(np.log(np.asarray(d, dtype=np.float64)), self.log_a, self.alpha, self.beta)

    def to_dict(self) -> dict[str, Any]:
        return {"A": self.a, "log_A": self.log_a, "alpha": self.alpha, "beta": self.beta, "rmse": self.rmse,
                "n_points": self.n_points, "n_sizes": self.n_sizes, "interpolates": self.n_sizes <= 3}


def _checked(d: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(d, dtype=np.float64).ravel()
    v = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != v.shape:
        raise TransferlabError(f"the law is fitted on pairs (D, value): got {x.size} sizes and {v.size} values")
    if not (np.all(np.isfinite(x)) and np.all(x > 0) and np.all(np.isfinite(v))):
        raise TransferlabError("the law is fitted on positive, finite sizes and finite values")
    if np.any(v <= 0):
        raise TransferlabError("the log law (log(A · D^α))^β is positive: a value <= 0 cannot lie on it")
    if len(np.unique(x)) < 3:
        raise TransferlabError(f"the log law has three parameters (A, α, β): it needs points at 3 or more distinct "
                               f"sizes, got {len(np.unique(x))}")
    return x, v


def fit_log_law(d: Any, y: Any) -> LawFit:
    """Least-squares fit of ``y ≈ (log(A · d^α))^β`` (several points per size, e.g. one per seed, are fine)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    x, v = _checked(d, y)
    lx = np.log(x)
    best: tuple[float, np.ndarray] | None = None
    for b0 in _BETA_STARTS:
        alpha0, c0 = np.polyfit(lx, v ** (1.0 / b0), 1)  # exact for beta = b0: a straight line in log D
        if not np.all(c0 + alpha0 * lx > 0):
            continue
        try:
            with warnings.catch_warnings():  # no covariance when the fit interpolates: the fit itself is what we use
                warnings.simplefilter("ignore", OptimizeWarning)
                p, _ = curve_fit(_law, lx, v, p0=(c0, alpha0, b0), max_nfev=20000,
                                 bounds=([-np.inf, -np.inf, 1e-3], [np.inf, np.inf, 1e3]))
        except (RuntimeError, ValueError):  # did not converge from this start
            continue
        sse = float(np.sum((_law(lx, *p) - v) ** 2))
        if np.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, p)
    if best is None:
        raise TransferlabError("the log law could not be fitted to these points (no start converged)")
    sse, (c, alpha, beta) = best
    return LawFit(float(c), float(alpha), float(beta), math.sqrt(sse / len(v)), len(v), len(np.unique(x)))


def held_back(d: Any, y: Any, at: float, measured: list[float]) -> dict[str, Any]:
    """Fit the law on ``(d, y)``, predict the size ``at`` and compare with its ``measured`` values (one per seed):
    the fit, the prediction, its error (prediction − mean measured) and two naive predictors' errors: the mean at
    the largest fitted size (no growth) and the straight line in log D (the law with β = 1)."""
    mean = float(np.mean(measured))
    out: dict[str, Any] = {"held_back_size": at, "measured": mean,
                           "measured_sd": float(np.std(measured, ddof=1)) if len(measured) > 1 else None,
                           "n_measured": len(measured)}
    try:
        x, v = _checked(d, y)
        f = fit_log_law(x, v)
    except TransferlabError as exc:
        return {**out, "fit": None, "why": str(exc), "predicted": None, "error": None}
    predicted = float(f.predict(at))
    slope, icpt = np.polyfit(np.log(x), v, 1)
    flat = float(np.mean(v[x == x.max()]))
    grid = np.geomspace(x.min(), at, 60)
    return {**out, "fit": f.to_dict(), "predicted": predicted, "error": predicted - mean,
            "loglinear_error": float(icpt + slope * math.log(at)) - mean, "flat_error": flat - mean,
            "curve": {"d": grid.tolist(), "accuracy": f.predict(grid).tolist()}}
