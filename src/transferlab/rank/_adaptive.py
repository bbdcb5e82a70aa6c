"""Adaptive ranking: the forward passes go to the contenders.

Rounds over growing, nested, class-stratified subsets of the target. The examples are put once in a fixed, seeded
order (:func:`stratified_order`: every prefix holds the classes in their proportions, and every class's first two
examples come first), so the subset of a round is a prefix of the next and growing computes only the new examples
(:func:`subset_sizes`: ``start`` (at least 4 per class), times ``growth`` each round, then the whole set).

At each round every surviving model is scored with every metric on the subset and the consensus is computed among
the survivors (:func:`~transferlab.rank._consensus.consensus`); the leader is the model it puts first. Its
uncertainty comes from resampling the subset's examples: class-stratified half-samples, drawn without replacement
with a seeded generator, each scored with every metric and ranked again. ``P(below the leader)`` of a model is the
share of ``resamples`` half-samples in which its consensus is below the leader's; a model is dropped when it reaches
``confidence``. The rounds stop when one model is left or the data is exhausted (the last round, on every example,
only ranks: there is nothing left to save).

Two scores of one metric closer than ``tie`` standard errors of that metric's score are a tie in a resample's ranks
(the standard error: the median over the survivors of a score's spread over the first 10 half-samples, drawn before
any decision). Without it, models that differ by far less than the sampling noise (near-identical features) would
be ordered by their negligible differences in every resample alike, and the rank-based consensus would turn those
into whole places. Resampling stops as soon as every model's decision is certain (dropped, or unable to reach
``confidence`` in the half-samples left): the same decisions as drawing all of them.

Why half-samples and not the bootstrap's draws with replacement: a drawn-twice example is its own nearest neighbour
and falls in both the training and the test fold of the cross-validated scores (kNN, the linear probe: their
accuracies rise towards 1 for every model alike), and TMI's nearest-neighbour entropy takes the log of a zero
distance. A half-sample without replacement has no duplicates, and for a mean-like score it has the variance of the
whole subset's (sigma^2/m * (1 - m/n) = sigma^2/n at m = n/2: the half-sampling of Efron and Tibshirani, 1993, ch. 10).

The ranking: the survivors by the consensus over the whole zoo, every model at the scores of the largest subset it
was scored on (the survivors at the last round's, the dropped models at the scores of the round that dropped them:
they place the survivors as the other models of a full ranking do, where a consensus among two or three survivors
alone ties whenever each is first on half the metrics); then the dropped models in the reverse order of dropping (a
model dropped later was a contender for longer), those dropped in one round by their consensus in it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MetricError, TransferlabError
from ._consensus import consensus, metric_ranks
from ._score import metric_info, needs_source_probs, score_prepared
from ._stats import FeatureStats
from ._validate import as_features, as_labels, source_prob_stats


@dataclass(frozen=True)
class AdaptiveSettings:
    """How an adaptive ranking grows and when it drops a model (checked by :func:`check_settings`)."""

    confidence: float = 0.95  # drop a model when P(its consensus < the leader's) reaches this
    start: int = 64  # examples of the first round (at least 4 per class)
    growth: float = 2.0  # each round's subset is this many times the last one's (the last round: every example)
    resamples: int = 50  # half-samples per round that estimate P(below the leader)
    tie: float = 0.5  # scores of one metric closer than this many standard errors tie in a resample
    seed: int = 0  # the order of the examples and the half-samples


def check_settings(s: AdaptiveSettings) -> AdaptiveSettings:
    """``s``, or one :class:`TransferlabError` saying which setting is out of range and what it takes."""
    def bad(what: str) -> TransferlabError:
        return TransferlabError(f"adaptive ranking: {what}")

    c = s.confidence
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.5 < c < 1:
        raise bad(f"confidence must lie strictly between 0.5 and 1 (e.g. 0.95), got {c!r}: at 0.5 or less a model "
                  "tied with the leader could be dropped, at 1 none ever would")
    if isinstance(s.start, bool) or not isinstance(s.start, int) or s.start < 2:
        raise bad(f"start must be a whole number of examples >= 2, got {s.start!r}")
    if isinstance(s.growth, bool) or not isinstance(s.growth, (int, float)) or not s.growth > 1:
        raise bad(f"growth must be a number > 1 (each round's subset larger than the last), got {s.growth!r}")
    least = math.ceil(1 / (1 - c))  # fewer resamples could never reach the confidence
    if isinstance(s.resamples, bool) or not isinstance(s.resamples, int) or s.resamples < max(10, least):
        raise bad(f"resamples must be a whole number >= {max(10, least)} at confidence {c:g}, got {s.resamples!r}")
    if isinstance(s.tie, bool) or not isinstance(s.tie, (int, float)) or not 0 <= s.tie < 10:
        raise bad(f"tie must be a number of standard errors in [0, 10), got {s.tie!r}")
    return s


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of the examples whose every prefix is class-stratified: each class's examples shuffled,
    its first two placed first, the rest spread by the key (rank + U(0, 1)) / class size, so a prefix of n holds
    about n x (the class's share) of every class."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    key = np.empty(len(y))
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        r = np.arange(len(idx), dtype=np.float64) + rng.random(len(idx))
        key[idx] = np.where(np.arange(len(idx)) < 2, r - 10.0, r / len(idx))  # the first two of every class lead
    return np.argsort(key, kind="stable")


def subset_sizes(n: int, num_classes: int, start: int, growth: float) -> list[int]:
    """The examples of each round: ``max(start, 4 x classes)``, times ``growth`` each round, then ``n``."""
    first = min(n, max(start, 4 * num_classes))
    sizes = [first]
    while sizes[-1] < n:
        nxt = math.ceil(sizes[-1] * growth)
        sizes.append(n if nxt >= n else nxt)
    return sizes


def half_sample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted rows of a class-stratified half of ``y``, drawn without replacement: half of each class (at least two,
    where the class has two)."""
    rows = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rows.append(rng.choice(idx, max(min(2, len(idx)), len(idx) // 2), replace=False))
    return np.sort(np.concatenate(rows))


def score_features(metrics: list[str], options: dict[str, dict[str, Any]], features: np.ndarray,
                   probs: np.ndarray | None, labels: np.ndarray) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric on one model's features of some examples: (scores, failures). None marks a metric that does not
    apply (no source head; no source statistics) or failed (its failure says why), as in ``rank``."""
    y, _ = as_labels(labels, len(labels))
    scores: dict[str, float | None] = {}
    failures: dict[str, str] = {}
    stats = pstats = None
    for m in metrics:
        opts = options.get(m, {})
        if (needs_source_probs(m) and probs is None) or (metric_info(m).get("needs_source_stats")
                                                          and "source_mean" not in opts):
            scores[m] = None
            continue
        try:
            if needs_source_probs(m):
                pstats = pstats if pstats is not None else source_prob_stats(probs, len(y), m)
                scores[m] = score_prepared(m, pstats, y, pstats.p, opts)
            else:
                stats = stats or FeatureStats(as_features(features))
                scores[m] = score_prepared(m, stats, y, None, opts)
        except MetricError as exc:
            scores[m], failures[m] = None, str(exc)
    return scores, failures


@dataclass(frozen=True)
class Grown:
    """One model's features on the first n examples of the order, and how many examples it ran to get them."""

    features: np.ndarray
    probs: np.ndarray | None
    processed: int  # examples run through the model for this call (0: all from the cache, or already held)
    computed: int = 0  # of those, run in this process (the rest read from the feature cache)


#: grow(model index, n) -> that model's features on the first n examples of the order
Grow = Callable[[int, int], Grown]


@dataclass
class Rounds:
    """What an adaptive ranking did: per round, who took part, their consensus and P(below the leader), who was dropped
    and why, the forward passes spent; per model, its scores on the largest subset it was scored on; the order."""

    sizes: list[int]  # the planned subsets
    rounds: list[dict[str, Any]] = field(default_factory=list)
    models: dict[int, dict[str, Any]] = field(default_factory=dict)  # model index -> its last round's scores
    order: list[int] = field(default_factory=list)  # the final ranking, model indices
    forward_passes: int = 0  # examples run through each model, summed (what a cold run computes)
    computed: int = 0  # of those, run in this process (the rest came from the feature cache)
    settings: AdaptiveSettings | None = None


@dataclass(frozen=True)
class _Scoring:
    """What scoring one round reads: the metrics, each model's options, the labels of the round's examples."""

    metrics: list[str]
    options: list[dict[str, dict[str, Any]]]  # one per model (a model's source statistics are its own)
    y: np.ndarray


def run_rounds(grow: Grow, names: list[str], y: np.ndarray, metrics: list[str],
               options: list[dict[str, dict[str, Any]]], settings: AdaptiveSettings, bars: Any = None) -> Rounds:
    """Rank the models ``names`` (``grow(i, n)``: model i's features on the first n examples of the order; ``y``:
    the labels in that order) in rounds over growing prefixes, dropping the models below the leader with
    ``settings.confidence``. ``bars``: a :class:`transferlab._progress.Bars` (None: no progress)."""
    from .._progress import Bars

    s = check_settings(settings)
    bars = bars if bars is not None else Bars()
    out = Rounds(sizes=subset_sizes(len(y), len(np.unique(y)), s.start, s.growth), settings=s)
    clock = dict.fromkeys(range(len(names)), 0.0)  # seconds of metrics per model, every round and resample
    rng = np.random.default_rng([s.seed, 1])  # the half-samples (the order of the examples took the seed alone)
    alive = list(range(len(names)))
    for k, n in enumerate(out.sizes):
        t0 = time.perf_counter()
        held, spent = {}, 0
        for i in alive:
            held[i] = grow(i, n)
            spent += held[i].processed
            out.computed += held[i].computed
        out.forward_passes += spent
        t1 = time.perf_counter()
        scoring = _Scoring(metrics, options, y[:n])
        scored = {i: _timed(clock, i, score_features, metrics, options[i], held[i].features, held[i].probs,
                            scoring.y) for i in alive}
        table = {m: [scored[i][0][m] for i in alive] for m in metrics}
        cscore, crank = consensus(table, len(alive))
        leader = alive[crank.index(1)]
        last = k == len(out.sizes) - 1 or len(alive) == 1
        t2 = time.perf_counter()
        task = None if last else bars.add(f"round {k + 1}: {n} examples, {len(alive)} models: resampling",
                                          s.resamples)
        p_below, drawn, drop = ({}, 0, []) if last else _p_below(scoring, held, alive, leader, s,
                                                                 (rng, bars, task, clock))
        ranks = {m: metric_ranks(table[m]) for m in metrics}
        for j, i in enumerate(alive):
            out.models[i] = {"scores": scored[i][0], "failures": scored[i][1], "consensus": cscore[j],
                             "ranks": {m: ranks[m][j] for m in metrics}, "examples": n, "round": k + 1,
                             "dropped": i in drop, "p_below_leader": p_below.get(i), "metric_seconds": clock[i]}
        out.rounds.append({
            "round": k + 1, "examples": n, "models": [names[i] for i in alive], "leader": names[leader],
            "consensus": {names[i]: cscore[j] for j, i in enumerate(alive)},
            "p_below_leader": {names[i]: p for i, p in p_below.items() if i != leader}, "resamples": drawn,
            "dropped": {names[i]: f"P(consensus below {names[leader]}'s) = {p_below[i]:.2f} >= {s.confidence:g} "
                                  f"on {n} examples" for i in drop},
            "forward_passes": spent, "forward_passes_total": out.forward_passes,
            "seconds": {"features": t1 - t0, "metrics": t2 - t1, "resampling": time.perf_counter() - t2}})
        alive = [i for i in alive if i not in drop]
        if last or len(alive) == 1:
            break
    _zoo_consensus(out, metrics)
    out.order = _final_order(out, alive)
    return out


def _timed(clock: dict[int, float], i: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, its seconds added to ``clock[i]``."""
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        clock[i] += time.perf_counter() - t0


PILOT = 10  # half-samples drawn before any decision: the standard errors behind the ties come from them


def _p_below(scoring: _Scoring, held: dict[int, Grown], alive: list[int], leader: int, settings: AdaptiveSettings,
             draw: tuple[np.random.Generator, Any, Any, dict[int, float]]) -> tuple[dict[int, float], int, list[int]]:
    """(per model, the share of the half-samples drawn in which its consensus is below ``leader``'s; how many were
    drawn; the models below in at least ``confidence`` of ``resamples``: dropped). A model no metric could score on a
    half-sample counts as below. Drawing stops once every decision is certain. ``draw``: the generator, the bars, the
    bar's task and the seconds of metrics per model (added to)."""
    rng, bars, task, clock = draw
    budget, need = settings.resamples, math.ceil(settings.confidence * settings.resamples - 1e-9)
    draws: list[list[dict[str, float | None]]] = []
    below = np.zeros(len(alive), dtype=int)
    tol: dict[str, float] = {}
    lead = alive.index(leader)
    for b in range(budget):
        rows = half_sample(scoring.y, rng)
        draws.append([_timed(clock, i, score_features, scoring.metrics, scoring.options[i], held[i].features[rows],
                             None if held[i].probs is None else held[i].probs[rows], scoring.y[rows])[0]
                      for i in alive])
        bars.advance(task)
        if b + 1 == min(PILOT, budget):
            tol = _tolerances(draws, scoring.metrics, settings.tie)
            below = sum((_below(d, tol, lead) for d in draws), below)
        elif b + 1 > PILOT:
            below = below + _below(draws[-1], tol, lead)
        if b + 1 >= PILOT and all(j == lead or below[j] >= need or below[j] + budget - b - 1 < need
                                  for j in range(len(alive))):
            break
    return ({i: float(below[j]) / len(draws) for j, i in enumerate(alive)}, len(draws),
            [i for j, i in enumerate(alive) if below[j] >= need])


def _tolerances(draws: list[list[dict[str, float | None]]], metrics: list[str], tie: float) -> dict[str, float]:
    """Per metric, ``tie`` times the median over the models of their score's standard deviation over ``draws``."""
    out = {}
    for m in metrics:
        sds = [np.std(v) for j in range(len(draws[0]))
               if len(v := [d[j][m] for d in draws if d[j][m] is not None]) > 1]
        out[m] = tie * float(np.median(sds)) if sds else 0.0
    return out


def _below(scores: list[dict[str, float | None]], tol: dict[str, float], lead: int) -> np.ndarray:
    """1 for every model whose consensus in this resample is below the model ``lead``'s, with each metric's scores
    closer than its tolerance tied (each score rounded to a grid of that width)."""
    table = {m: [None if sc[m] is None else (round(sc[m] / tol[m]) if tol[m] > 0 else sc[m]) for sc in scores]
             for m in tol}
    cscore, _ = consensus(table, len(scores))
    top = cscore[lead]
    if top is None:
        return np.zeros(len(scores), dtype=int)
    return np.array([int(j != lead and (c is None or c < top)) for j, c in enumerate(cscore)])


def _zoo_consensus(out: Rounds, metrics: list[str]) -> None:
    """The consensus over the whole zoo, every model at the scores of the largest subset it was scored on (the
    dropped ones at their last round's), and its per-metric ranks: ``zoo_consensus`` and ``zoo_ranks`` of each model.
    The dropped models place the survivors as a full ranking's other models do: a rank-based consensus among the
    survivors alone forgets how far apart they are on each metric (two of them first on half the metrics each tie,
    whatever their margins)."""
    idx = sorted(out.models)
    table = {m: [out.models[i]["scores"][m] for i in idx] for m in metrics}
    cscore, _ = consensus(table, len(idx))
    ranks = {m: metric_ranks(table[m]) for m in metrics}
    for j, i in enumerate(idx):
        out.models[i]["zoo_consensus"] = cscore[j]
        out.models[i]["zoo_ranks"] = {m: ranks[m][j] for m in metrics}


def _final_order(out: Rounds, alive: list[int]) -> list[int]:
    """The survivors by the consensus over the whole zoo (:func:`_zoo_consensus`), then the dropped models, the latest
    dropped first and those of one round by their consensus in it (ties: the zoo's order)."""
    def best(i: int) -> tuple[float, int]:
        c = out.models[i]["zoo_consensus"]
        return (-(c if c is not None else -1.0), i)

    def dropped(i: int) -> tuple[int, float, int]:
        c = out.models[i]["consensus"]
        return (-out.models[i]["round"], -(c if c is not None else -1.0), i)

    return sorted(alive, key=best) + sorted((i for i in out.models if i not in alive), key=dropped)
