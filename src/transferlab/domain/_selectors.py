"""Label-free model selection for domain adaptation: scores of a checkpoint computed without target labels, higher
is better. Each takes :class:`Evidence` (the checkpoint's predictions and bottleneck features on un-augmented target
data, its classifier weights, its predictions on a labelled source hold-out) and returns ``{"score": ..., parts}``.

- ``transfer_score`` (Yang et al., ICLR 2024): Hopkins(target features) − IM/log K − U(classifier), with U the mean
  squared gap between the class-weight angles and the regular simplex's arccos(−1/(K−1)), IM = mean H(p) − H(mean p)
  (≤ 0). The reference samples unseeded, on augmented data; ours is seeded and un-augmented.
- ``entropy``: −mean prediction entropy; ``im``: information maximisation H(mean p) − mean H(p);
- ``snd`` (Saito et al., ICCV 2021): soft neighbourhood density, the mean entropy of each target example's softmax
  similarity (T = 0.05) to the others, on L2-normalised predictions;
- ``dev`` (You et al., ICML 2019): deep embedded validation, −(importance-weighted source hold-out loss with a
  control variate), the weights p(target|z)/p(source|z) from a logistic domain classifier on the features
  (cross-fitted);
- ``source_val``: accuracy on the source hold-out;
- ``guarded`` (the default): a label-free score (``transfer_score``) only for a checkpoint whose source hold-out
  accuracy stays within ``tolerance`` of the reference checkpoint's and whose target predictions are not collapsed
  (effective share of classes ≥ ``min_balance`` x the reference's); NaN (not a candidate) otherwise. The reference
  (:attr:`Evidence.reference`) is the model before adaptation in a source-free run, the most source-accurate epoch so
  far in a run with source data (``adapt`` falls back to it when no epoch passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._registry import Registry

SELECTORS: Registry[Any] = Registry("label-free selector")
EPS = 1e-5


@dataclass
class Evidence:
    """What a selector may read about one checkpoint."""

    probs_t: np.ndarray  # [N_t, K] target predictions (softmax), un-augmented target data
    features_t: np.ndarray  # [N_t, d] bottleneck features of the same
    classifier: np.ndarray  # [K, d] weights of the final linear layer
    probs_s: np.ndarray | None = None  # [N_s, K] predictions on the labelled source hold-out
    labels_s: np.ndarray | None = None
    features_s: np.ndarray | None = None
    seed: int = 0
    #: the checkpoint ``guarded`` compares against: ``source_accuracy`` (absent without a source hold-out) and
    #: ``balance`` (its target predictions' effective share of classes), ``predictions`` (its target classes, a
    #: source-free run's source model); None: no reference (uniform balance)
    reference: dict[str, Any] | None = None


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p + EPS)).sum(-1)


def uniformity(weights: np.ndarray) -> float:
    """Mean over class pairs of (θ_ij − arccos(−1/(K−1)))², θ the angle between row-normalised class weights: 0 for
    a regular simplex (every pair equally far apart), larger for a classifier biased towards some classes."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    k = len(w)
    if k < 2:
        return 0.0
    cos = np.clip(w @ w.T, -1.0, 1.0)
    i, j = np.triu_indices(k, 1)
    return float(np.mean((np.arccos(cos[i, j]) - math.acos(-1.0 / (k - 1))) ** 2))


def information_maximisation(probs: np.ndarray) -> float:
    """mean_i H(p_i) − H(mean_i p_i): ≤ 0, and −log K at best (every prediction certain, classes balanced)."""
    p = np.asarray(probs, dtype=np.float64)
    return float(np.mean(_entropy(p)) - _entropy(p.mean(0)))


def hopkins(features: np.ndarray, seed: int = 0, fraction: float = 0.05) -> float:
    """The Hopkins statistic of ``features``: m = ``fraction``·N uniform points in their bounding box (u: distance to
    the nearest feature) against m features (w: distance to their nearest other feature); Σu/(Σu + Σw) is about 0.5
    for uniform data and tends to 1 for well-separated clusters. Seeded."""
    from sklearn.neighbors import NearestNeighbors

    z = np.asarray(features, dtype=np.float64)
    n = len(z)
    if n < 3:
        return 0.5
    m = max(1, int(round(fraction * n)))
    rng = np.random.default_rng(seed)
    lo, hi = z.min(0), z.max(0)
    uniform = rng.uniform(lo, hi, (m, z.shape[1]))
    real = z[rng.choice(n, m, replace=False)]
    nn = NearestNeighbors(n_neighbors=2).fit(z)
    u = nn.kneighbors(uniform, n_neighbors=1)[0][:, 0]
    w = nn.kneighbors(real, n_neighbors=2)[0][:, 1]  # the first neighbour is the point itself
    total = u.sum() + w.sum()
    return float(u.sum() / total) if total > 0 else 0.5


@SELECTORS.register("transfer_score", paper="Yang et al., ICLR 2024", reference="sleepyseal/TransferScore @ 8b5c521")
def transfer_score(ev: Evidence) -> dict[str, float]:
    k = ev.probs_t.shape[1]
    u = uniformity(ev.classifier)
    im = information_maximisation(ev.probs_t)
    h = hopkins(ev.features_t, ev.seed)
    return {"score": h - im / math.log(k) - u, "hopkins": h, "im": im, "uniformity": u}


@SELECTORS.register("entropy", paper="prediction entropy (e.g. Morerio et al., ICLR 2018)")
def entropy(ev: Evidence) -> dict[str, float]:
    return {"score": -float(np.mean(_entropy(np.asarray(ev.probs_t, dtype=np.float64))))}


@SELECTORS.register("im", paper="information maximisation (Liang et al., SHOT, ICML 2020)")
def im(ev: Evidence) -> dict[str, float]:
    return {"score": -information_maximisation(ev.probs_t)}


#: SND looks at every pair of target examples: beyond this many it scores a seeded sample of them
SND_MAX = 10_000


@SELECTORS.register("snd", paper="Saito et al., Tune it the Right Way, ICCV 2021", temperature=0.05)
def snd(ev: Evidence, temperature: float = 0.05, block: int = 1024) -> dict[str, float]:
    """Row blocks of the similarity matrix at a time (memory ``block`` x N), on at most :data:`SND_MAX` examples
    (a seeded sample beyond)."""
    p = np.asarray(ev.probs_t, dtype=np.float64)
    if len(p) > SND_MAX:
        p = p[np.sort(np.random.default_rng(ev.seed).choice(len(p), SND_MAX, replace=False))]
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    total = 0.0
    for start in range(0, len(p), block):
        s = p[start:start + block] @ p.T / temperature
        s[np.arange(len(s)), np.arange(start, start + len(s))] = -np.inf  # not oneself
        s -= s.max(1, keepdims=True)
        e = np.exp(s)
        total += float(_entropy(e / e.sum(1, keepdims=True)).sum())
    return {"score": total / len(p)}


@SELECTORS.register("dev", paper="You et al., Towards Accurate Model Selection in Deep Unsupervised Domain "
                                 "Adaptation, ICML 2019")
def dev(ev: Evidence) -> dict[str, float]:
    """−DEV: the importance-weighted source hold-out loss with the control variate η = −Cov(L, w)/Var(w)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    if ev.features_s is None or ev.probs_s is None or ev.labels_s is None or len(ev.labels_s) < 4:
        return {"score": float("nan")}
    zs, zt = np.asarray(ev.features_s, np.float64), np.asarray(ev.features_t, np.float64)
    x = np.vstack([zs, zt])
    d = np.r_[np.zeros(len(zs)), np.ones(len(zt))]
    p_target = np.empty(len(zs))
    folds = StratifiedKFold(2, shuffle=True, random_state=ev.seed)
    for tr, te in folds.split(x, d):  # cross-fitted: no source point is weighed by a classifier that saw it
        clf = LogisticRegression(max_iter=500).fit(x[tr], d[tr])
        src = te[te < len(zs)]
        p_target[src] = clf.predict_proba(x[src])[:, 1]
    p_target = np.clip(p_target, 1e-6, 1 - 1e-6)
    w = p_target / (1 - p_target) * (len(zs) / len(zt))
    loss = -np.log(np.asarray(ev.probs_s, np.float64)[np.arange(len(zs)), ev.labels_s] + EPS)
    weighted = w * loss
    var = np.var(w, ddof=1)  # ddof=1 as np.cov below (and the reference)
    eta = -np.cov(weighted, w)[0, 1] / var if var > 0 else 0.0
    risk = float(np.mean(weighted) + eta * np.mean(w) - eta)
    return {"score": -risk, "weighted_loss": float(np.mean(weighted)), "eta": float(eta)}


@SELECTORS.register("source_val", paper="source validation accuracy (the usual default)")
def source_val(ev: Evidence) -> dict[str, float]:
    if ev.probs_s is None or ev.labels_s is None or not len(ev.labels_s):
        return {"score": float("nan")}
    return {"score": float(np.mean(np.asarray(ev.probs_s).argmax(1) == ev.labels_s))}


def balance(probs: np.ndarray) -> float:
    """exp(H(mean prediction)) / K: the effective share of classes the predictions spread over (1: balanced,
    1/K: every example given one class, a collapse)."""
    p = np.asarray(probs, dtype=np.float64)
    return float(np.exp(_entropy(p.mean(0))) / p.shape[1])


@SELECTORS.register("guarded", paper="transferlab: a label-free score among checkpoints that keep the source "
                                     "accuracy and do not collapse, else the source model (issue 32)",
                    tolerance=0.02, min_balance=0.5, base="transfer_score", order="score", min_agreement=0.0)
def guarded(ev: Evidence, tolerance: float = 0.02, min_balance: float = 0.5, base: str = "transfer_score",
            order: str = "score", min_agreement: float = 0.0) -> dict[str, float]:
    """``base``'s score where the checkpoint passes the guard, else NaN; ``passed`` 1/0, and the parts it tested.
    ``order="source_first"``: the passing checkpoints rank by source hold-out accuracy first, ``base`` breaking
    ties (lexicographic). ``min_agreement``: where the reference holds its target predictions (a source-free run's
    source model), the share of target examples whose predicted class stays the reference's must reach it."""
    ref = ev.reference or {}
    score = float(SELECTORS.get(base)(ev)["score"])
    bal = balance(ev.probs_t)
    ok = bal >= min_balance * float(ref.get("balance", 1.0))
    out = {"base": score, "balance": bal}
    if ref.get("predictions") is not None:
        agreement = float(np.mean(np.asarray(ev.probs_t).argmax(1) == np.asarray(ref["predictions"])))
        out["agreement"] = agreement
        ok = ok and agreement >= min_agreement
    if ev.probs_s is not None and ev.labels_s is not None and len(ev.labels_s):
        acc = float(np.mean(np.asarray(ev.probs_s).argmax(1) == ev.labels_s))
        out["source_accuracy"] = acc
        if ref.get("source_accuracy") is not None:
            ok = ok and acc >= float(ref["source_accuracy"]) - tolerance
        if order == "source_first":  # steps of the source accuracy (1/N >= 1e-4) outrank any base difference
            score = acc + 1e-5 * (0.5 + math.atan(score) / math.pi)
    return {"score": score if ok else float("nan"), "passed": float(ok), **out}
