"""``rank_adaptive``: ``rank`` in rounds over growing subsets, the forward passes going to the contenders
(:mod:`transferlab.rank._adaptive` decides; this module extracts the features and builds the :class:`RankResult`).

Features and the cache: the feature cache keys an entry by (model, preprocessing, the dataset's content) and
computes an entry's chunks from its first row to its last; it cannot hold the first n rows of a larger entry. So the
examples are put once in the seeded stratified order and each round's new examples (rows ``[held, n)`` of that
order) are one dataset of their own, extracted through :func:`transferlab.zoo.extract_features` with the cache: a
round computes only its new examples, and a rerun (same data, seed and schedule) reads every slice from the cache.
A model fitted on the whole dataset (``builtin:pixels``' PCA) is extracted on the whole prefix each round, its
examples counted each time. The cache entries of a full ``rank`` are other entries (another order of the examples).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import progress as progress_bars
from .._runtime import runtime
from ..data import Dataset
from ._adaptive import AdaptiveSettings, Grown, Rounds, check_settings, run_rounds, stratified_order
from ._api import _as_zoo, _backbones, _baseline_notes, _checked_metrics, _target
from ._model_run import source_stat_options, thread_limit
from ._result import ModelScores, RankResult


def rank_adaptive(
    dataset: Dataset | str | Path | Any,
    zoo: Any,
    metrics: list[str] | str | None = None,
    *,
    confidence: float = 0.95,
    start: int = 64,
    growth: float = 2.0,
    resamples: int | None = None,
    image_size: int | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    threads: int | None = None,
    progress: bool = False,
    metric_options: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    trust_pickle: bool = False,
    device: str | None = None,
    precision: str | None = None,
) -> RankResult:
    """Rank the models of ``zoo`` for ``dataset`` like :func:`~transferlab.rank.rank`, in rounds over growing,
    nested, class-stratified subsets (``start`` examples, at least 4 per class, times ``growth`` each round, then
    all), dropping after each round the models whose consensus is below the leader's in at least ``confidence`` of
    ``resamples`` half-samples of the round's examples (default: the fewest that can reach it, and at least 20).
    Stops when one model is left or the data is exhausted; see :mod:`transferlab.rank._adaptive` for the method.

    The ranking lists the survivors by their last consensus, then the dropped models, the latest dropped first; a
    dropped model's scores are those of the last round it took part in. ``result.adaptive`` holds every round (the
    models, their consensus and P(below the leader), who was dropped and why, the forward passes spent) and the
    forward passes against a full ranking's (examples x models, counted, not estimated). The other arguments are
    :func:`~transferlab.rank.rank`'s; ``seed`` also sets the order of the examples and the half-samples."""
    from ..zoo import FeatureCache

    t_total = time.perf_counter()
    settings = adaptive_settings(confidence, start=start, growth=growth, resamples=resamples, seed=seed)
    ds = _target(dataset, limit, seed)
    z = _as_zoo(zoo)
    names, opts = _checked_metrics(metrics, metric_options)
    backbones = _backbones(z, ds, trust_pickle)
    cache = FeatureCache(cache_dir) if use_cache else None
    if cache is not None:
        cache.check_writable()
    order = stratified_order(ds.labels, seed)
    with runtime(device, precision), thread_limit(threads), progress_bars(progress) as bars:
        grower = _Grower(ds, order, backbones, [e.display_name for e in z.models], (image_size, batch_size, cache,
                                                                                    bars))
        model_opts = [source_stat_options(opts, names, b, grower.sizes[i], batch_size, cache)[0]
                      for i, b in enumerate(backbones)]
        rounds = run_rounds(grower.grow, [e.display_name for e in z.models], ds.labels[order], names, model_opts,
                            settings, bars)
        grower.finish(rounds)
    result = _result(ds, z, names, rounds, grower)
    total = time.perf_counter() - t_total
    result.timings = {"total_seconds": total, **result.timings,
                      "overhead_seconds": max(0.0, total - result.timings["forward_seconds"])}
    result.options = {"image_size": image_size, "batch_size": batch_size, "threads": threads, "seed": seed,
                      "cache_dir": str(cache.root) if cache is not None else None, "limit": limit}
    result.notes.insert(0, adaptive_note(result.adaptive or {}))
    result.notes.extend(_baseline_notes(result))
    result.notes.extend(f"{m.name}: {k} failed ({why})" for m in result.models for k, why in m.failures.items())
    return result


def adaptive_settings(confidence: float = 0.95, *, start: int = 64, growth: float = 2.0, resamples: int | None = None,
                      seed: int = 0) -> AdaptiveSettings:
    """The settings of an adaptive ranking, checked (one :class:`~transferlab.errors.TransferlabError` naming a
    setting out of range). ``resamples`` None: the fewest half-samples that can reach ``confidence``
    (1 / (1 - confidence)), at least 20."""
    if resamples is None:
        try:
            resamples = max(20, math.ceil(1 / (1 - float(confidence)) - 1e-9))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            resamples = 20  # a bad confidence: check_settings says why
    return check_settings(AdaptiveSettings(confidence=confidence, start=start, growth=growth, resamples=resamples,
                                           seed=seed))


class _Grower:
    """Each model's features on a growing prefix of the stratified order: only the new examples extracted (one cached
    slice per round), a model fitted on the whole dataset re-extracted on the prefix. Counts what it extracts."""

    def __init__(self, ds: Dataset, order: np.ndarray, backbones: list[Any], names: list[str],
                 how: tuple[int | None, int, Any, Any]) -> None:
        self.ds, self.order, self.backbones, self.names = ds, order, backbones, names
        image_size, self.batch_size, self.cache, self.bars = how
        self.sizes = [image_size or (b.default_size(ds) if hasattr(b, "default_size") else None) for b in backbones]
        self.parts: list[list[Any]] = [[] for _ in backbones]  # Features per slice held (the prefix: one)
        self.seen: list[list[Any]] = [[] for _ in backbones]  # every extraction (its timings)
        self.held = [0] * len(backbones)
        self.tasks: dict[int, Any] = {}

    def grow(self, i: int, n: int) -> Grown:
        from ..zoo import extract_features

        b = self.backbones[i]
        task = self.tasks.get(i)
        if task is None:
            task = self.tasks[i] = self.bars.add(self.names[i], len(self.ds))
        lo = 0 if b.dataset_level else self.held[i]  # a model fitted on the dataset: the whole prefix again
        processed = n - lo if n > self.held[i] or b.dataset_level else 0
        if processed:
            advance = (lambda k: self.bars.advance(task, k)) if self.bars.enabled and not b.dataset_level else None
            part = extract_features(b, self.ds.subset(self.order[lo:n]), image_size=self.sizes[i],
                                    batch_size=self.batch_size, cache=self.cache, progress=advance)
            self.parts[i] = [part] if b.dataset_level else [*self.parts[i], part]
            self.seen[i].append(part)
            if b.dataset_level:
                self.bars.advance(task, n - self.held[i])  # the bar shows the examples held
        self.held[i] = max(self.held[i], n)
        computed = processed if processed and not self.parts[i][-1].cache_hit else 0
        feats = np.concatenate([p.features for p in self.parts[i]])[:n]
        probs = [p.source_probs for p in self.parts[i]]
        return Grown(feats, None if any(p is None for p in probs) else np.concatenate(probs)[:n], processed, computed)

    def finish(self, rounds: Rounds) -> None:
        """Say on each bar where its model stopped."""
        for i, task in self.tasks.items():
            m = rounds.models.get(i, {})
            what = f"dropped after round {m['round']}" if m.get("dropped") else "[green]done"
            self.bars.describe(task, f"{self.names[i]} {what}")

    def timings(self, i: int) -> dict[str, Any]:
        """Model ``i``'s extraction: seconds, forward-pass seconds, whether every slice came from the cache, and the
        cold run's record summed over its slices (None where a slice has none)."""
        parts = self.seen[i]
        colds = [p.cold for p in parts]
        return {"extract_seconds": sum(p.total_seconds for p in parts), "forward_seconds": sum(p.seconds for p in parts),
                "cache_hit": bool(parts) and all(p.cache_hit for p in parts),
                "cold": {"features_from_cache": bool(parts) and all(p.cache_hit for p in parts),
                         "forward_seconds": sum(c.get("forward_seconds") or 0.0 for c in colds if c),
                         "extract_seconds": sum(c.get("extract_seconds") or 0.0 for c in colds if c),
                         "recorded_at": max((c.get("recorded_at") for c in colds if c and c.get("recorded_at")),
                                            default=None),
                         "complete": all(c is not None for c in colds)}}


def _result(ds: Dataset, z: Any, names: list[str], rounds: Rounds, grower: _Grower) -> RankResult:
    """The :class:`RankResult` of an adaptive ranking: every model in the final order (its scores, ranks and
    consensus from the last round it took part in), the timings, the cache's state and ``adaptive``."""
    models = []
    for pos, i in enumerate(rounds.order):
        m, e, b = rounds.models[i], z.models[i], grower.backbones[i]
        meta = {**b.metadata(), **{k: v for k, v in e.model_dump().items() if k not in ("ref", "name") and v is not None}}
        meta["feature_dim"] = int(grower.parts[i][0].features.shape[1])
        timings = grower.timings(i) | {"metrics": {"all metrics, every round": m["metric_seconds"]},
                                        "examples": m["examples"], "round": m["round"]}
        timings["cold"]["metrics_seconds"] = m["metric_seconds"]
        models.append(ModelScores(model=e.ref, name=e.display_name, scores=m["scores"], ranks=m["zoo_ranks"],
                                  consensus_rank=pos + 1, consensus_score=m["zoo_consensus"], metadata=meta,
                                  timings=timings, failures=m["failures"]))
    colds = [mm.timings["cold"] for mm in models]
    hits = sum(c["features_from_cache"] for c in colds)
    state = "off" if grower.cache is None else "cold" if hits == 0 else "warm" if hits == len(models) else \
        "partly warm"
    missing = [mm.name for mm, c in zip(models, colds, strict=True) if not c["complete"]]
    dates = sorted(c["recorded_at"] for c in colds if c.get("recorded_at"))
    forward = sum(mm.timings["forward_seconds"] for mm in models)
    metric_seconds = sum(c["metrics_seconds"] for c in colds)
    cold_extract = sum(c["extract_seconds"] for c in colds)
    cache = {"state": state, "models": len(models), "features_from_cache": hits, "scores_from_cache": 0,
             "cold": {"seconds": cold_extract + metric_seconds, "extraction_seconds": cold_extract,
                      "forward_seconds": sum(c["forward_seconds"] for c in colds), "metrics_seconds": metric_seconds,
                      "recorded_at": dates[0] if dates else None, "complete": not missing, "not_recorded": missing}}
    timings = {"extraction_seconds": sum(mm.timings["extract_seconds"] for mm in models), "forward_seconds": forward,
               "metrics_seconds": metric_seconds,
               "resampling_seconds": sum(r["seconds"]["resampling"] for r in rounds.rounds)}
    return RankResult(dataset=ds.info(), zoo=z.name, metrics=names, models=models, timings=timings, cache=cache,
                      adaptive=_summary(rounds, [e.display_name for e in z.models], len(ds), len(models)))


def _summary(rounds: Rounds, names: list[str], n: int, n_models: int) -> dict[str, Any]:
    """What ``result.adaptive`` holds: the settings' outcome, every round, the survivors, why each dropped model was
    dropped, the forward passes against a full ranking's."""
    survivors = [names[i] for i in rounds.order if not rounds.models[i]["dropped"]]
    full = n * n_models
    return {"sizes": rounds.sizes, "rounds": rounds.rounds, "survivors": survivors,
            "dropped": {names[i]: {"round": m["round"], "examples": m["examples"],
                                   "why": rounds.rounds[m["round"] - 1]["dropped"][names[i]]}
                        for i, m in rounds.models.items() if m["dropped"]},
            "order": [names[i] for i in rounds.order],
            "forward_passes": rounds.forward_passes, "forward_passes_computed": rounds.computed,
            "forward_passes_full": full, "forward_passes_share": rounds.forward_passes / full if full else None,
            "settings": asdict(rounds.settings) if rounds.settings is not None else None}


def adaptive_note(a: dict[str, Any]) -> str:
    """One sentence on an adaptive ranking: how it ended, what it dropped, what it spent against a full ranking."""
    if not a:
        return ""
    rounds, last = a["rounds"], a["rounds"][-1]
    ended = (f"one model left after round {last['round']} ({last['examples']:,} examples)"
             if len(a["survivors"]) == 1 else f"the data exhausted, {len(a['survivors'])} models left")
    return (f"Adaptive ranking: {len(rounds)} round(s) on {', '.join(f'{r:,}' for r in a['sizes'][:len(rounds)])} "
            f"examples; {ended}; {len(a['dropped'])} model(s) dropped, listed below the survivors, the latest "
            f"dropped first, with the scores of their last round; forward passes {a['forward_passes']:,} of a full "
            f"ranking's {a['forward_passes_full']:,} ({100 * (a['forward_passes_share'] or 0):.0f} %).")
