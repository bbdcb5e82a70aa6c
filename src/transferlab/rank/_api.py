"""``rank``: score every model of a zoo on a dataset with every metric."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import progress as progress_bars
from ..data import Dataset, check_rankable, load_dataset
from ..errors import MetricError
from ._consensus import consensus, metric_ranks
from ._result import ModelScores, RankResult
from ._score import check_metric_options, list_metrics, metric_info, needs_source_probs, score_prepared
from ._stats import FeatureStats
from ._validate import as_features, as_labels, source_prob_stats

log = logging.getLogger(__name__)


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Limit torch intra-op threads and BLAS/OpenMP threads (threadpoolctl) for the duration.

    torch is configured only once it is imported (a fully cached run never imports it): backbones call
    :func:`transferlab.zoo.apply_thread_limit` before their first forward pass.
    """
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits

    from ..zoo import torch_threads

    with torch_threads(threads), threadpool_limits(limits=threads):
        yield


def score_key(metric: str, options: dict[str, Any], labels_digest: str) -> str:
    """Identity of one metric computation on cached features (metric, its ``revision`` (registry metadata, bumped
    when a metric's definition changes), options, labels, library version)."""
    from .._version import __version__

    keyed = {k: (hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() if isinstance(v, np.ndarray) else v)
             for k, v in options.items()}  # arrays by content: their str() is abbreviated
    blob = json.dumps({"metric": metric, "revision": metric_info(metric).get("revision", 1), "options": keyed,
                       "labels": labels_digest, "version": __version__},
                      sort_keys=True, default=str)
    return f"{metric}:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _resolve_metrics(metrics: Sequence[str] | str | None) -> list[str]:
    known = list_metrics()
    if metrics is None:  # the default set: every metric not marked opt-in (slow, or needing extra inputs)
        return [m for m in known if metric_info(m).get("default", True)]
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise MetricError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    if not metrics:
        raise MetricError(f"no metric given; known: {', '.join(known)}")
    return list(dict.fromkeys(metrics))


def rank(
    dataset: Dataset | str | Path | Any,
    zoo: Any,
    metrics: Sequence[str] | str | None = None,
    *,
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
    ensemble: int | None = None,
    ensemble_theta: float = 4.0,
) -> RankResult:
    """Rank the models of ``zoo`` for ``dataset`` without fine-tuning.

    ``dataset``: a :class:`~transferlab.data.Dataset` or a reference (its train split is used). ``zoo``: a
    :class:`~transferlab.zoo.Zoo`, a zoo reference (``builtin:vision``, a YAML file) or a list of model references.
    ``metrics``: names (default: all registered). ``limit``: a class-stratified sample of that many examples.
    Features are cached (``cache_dir``, else ``$TRANSFERLAB_CACHE``, else the user cache directory).
    ``ensemble``: also choose that many models that transfer well together (``result.ensemble``; see
    :mod:`transferlab.rank._ensemble` for the objective).
    """
    from ..zoo import FeatureCache

    t_total = time.perf_counter()
    ds = _target(dataset, limit, seed)
    z = _as_zoo(zoo)
    names, opts = _checked_metrics(metrics, metric_options)
    backbones = _backbones(z, ds, trust_pickle)
    cache = FeatureCache(cache_dir) if use_cache else None
    if cache is not None:
        cache.check_writable()
    y, _ = as_labels(ds.labels, len(ds))
    setup = _Setup(ds=ds, zoo=z, backbones=backbones, metrics=names, options=opts, cache=cache, y=y,
                   labels_digest=hashlib.sha256(y.tobytes()).hexdigest(), image_size=image_size,
                   batch_size=batch_size, ens_rows=_ensemble_rows(len(ds), seed) if ensemble else None)
    runs = _score_zoo(setup, threads, progress)
    _fail_if_nothing_scored(runs, names)
    models = _model_scores(runs, names)
    total = time.perf_counter() - t_total
    forward = sum((r.timings["forward_seconds"] for r in runs), 0.0)
    result = RankResult(
        dataset=ds.info() | {"limit": limit},
        zoo=z.name,
        metrics=names,
        models=models,
        timings={"total_seconds": total, "extraction_seconds": sum((r.extract_wall for r in runs), 0.0),
                 "forward_seconds": forward,
                 "metrics_seconds": sum((dt for r in runs for dt in r.timings["metrics"].values()), 0.0),
                 "overhead_seconds": max(0.0, total - forward)},
        options={"image_size": image_size, "batch_size": batch_size, "threads": threads, "seed": seed,
                 "cache_dir": str(cache.root) if cache is not None else None},
    )
    result.notes.extend(_baseline_notes(result))
    result.notes.extend(f"{m.name}: {k} failed ({why})" for m in models for k, why in m.failures.items())
    if ensemble:
        result.ensemble = _choose_ensemble(runs, models, ensemble, ensemble_theta)
    return result


@dataclass(frozen=True)
class _Setup:
    """A rank call checked and resolved before any work: what scoring each model reads."""

    ds: Dataset  # the target (sampled to ``limit``)
    zoo: Any  # the Zoo
    backbones: list[Any]  # one per zoo entry, in the zoo's order
    metrics: list[str]
    options: dict[str, dict[str, Any]]  # metric -> options, as given
    cache: Any  # FeatureCache, or None without a cache
    y: np.ndarray  # the labels, as the metrics read them
    labels_digest: str  # part of every score's cache key
    image_size: int | None
    batch_size: int
    ens_rows: np.ndarray | None  # the target subsample the ensemble compares models on; None without an ensemble


@dataclass(frozen=True)
class _ModelRun:
    """One model scored: what its ModelScores and the result's totals are made of."""

    entry: Any  # the ZooModel
    scores: dict[str, float | None]
    failures: dict[str, str]  # metric -> why it failed
    timings: dict[str, Any]  # extract/forward seconds, cache hit, seconds per computed metric
    meta: dict[str, Any]
    extract_wall: float  # seconds spent in extract_features, cache reads included
    ens_features: np.ndarray | None  # float64 features of the ensemble's subsample


def _target(dataset: Dataset | str | Path | Any, limit: int | None, seed: int) -> Dataset:
    """The dataset to rank for: loaded, sampled to ``limit`` (class-stratified) and checked."""
    ds = load_dataset(dataset) if not isinstance(dataset, Dataset) else dataset
    if limit:
        ds = ds.stratified_sample(limit, seed=seed)
    check_rankable(ds)
    return ds


def _as_zoo(zoo: Any) -> Any:
    """A Zoo from a Zoo, a list of model references or a zoo reference."""
    from ..zoo import Zoo, ZooModel, load_zoo

    if isinstance(zoo, Zoo):
        return zoo
    if isinstance(zoo, (list, tuple)):
        return Zoo(name="custom", models=[ZooModel(ref=r) for r in zoo])
    return load_zoo(zoo)


def _checked_metrics(metrics: Sequence[str] | str | None,
                     metric_options: dict[str, dict[str, Any]] | None) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The metric names and their options, checked: a typo in a name or an option fails before any work."""
    names = _resolve_metrics(metrics)
    opts = metric_options or {}
    for m in names:
        check_metric_options(m, opts.get(m, {}))
    return names, opts


def _backbones(z: Any, ds: Dataset, trust_pickle: bool) -> list[Any]:
    """Every model of the zoo resolved (all first: a typo fails before any work) and checked against the data."""
    from ..zoo import resolve_model

    backbones = [resolve_model(m.ref, trust_pickle=trust_pickle) for m in z.models]
    for b in backbones:
        b.check_dataset(ds)
    return backbones


def _ensemble_rows(n: int, seed: int) -> np.ndarray:
    """The rows of the target on which the ensemble compares models (CKA): a sorted subsample of at most 500."""
    return np.sort(np.random.default_rng(seed).choice(n, min(500, n), replace=False))


def _score_zoo(setup: _Setup, threads: int | None, progress: bool) -> list[_ModelRun]:
    """Every model of the zoo scored, in the zoo's order, under the thread limit, with a progress bar per model."""
    runs = []
    with thread_limit(threads), progress_bars(progress) as bars:
        for entry, backbone in zip(setup.zoo.models, setup.backbones, strict=True):
            task = bars.add(entry.display_name, len(setup.ds))
            runs.append(_score_model(setup, entry, backbone,
                                     (lambda k, task=task: bars.advance(task, k)) if bars.enabled else None))
            bars.describe(task, f"{entry.display_name} [green]done")
    return runs


def _score_model(setup: _Setup, entry: Any, backbone: Any, advance: Callable[[int], None] | None) -> _ModelRun:
    """One model: its features (cached), then every metric on them; ``advance(k)`` reports k examples done."""
    from ..zoo import extract_features

    t0 = time.perf_counter()
    size = setup.image_size or (backbone.default_size(setup.ds) if hasattr(backbone, "default_size") else None)
    feats = extract_features(backbone, setup.ds, image_size=size, batch_size=setup.batch_size, cache=setup.cache,
                             progress=advance)
    extract_wall = time.perf_counter() - t0
    model_opts = _with_source_stats(setup.options, setup.metrics, backbone, size, setup.batch_size, setup.cache)
    scores, failures, seconds = _score_metrics(setup, entry, feats, model_opts)
    timings: dict[str, Any] = {"extract_seconds": feats.total_seconds, "forward_seconds": feats.seconds,
                               "cache_hit": feats.cache_hit, "metrics": seconds}
    meta = {**backbone.metadata(), **{k: v for k, v in entry.model_dump().items()
                                      if k not in ("ref", "name") and v is not None}}
    meta["feature_dim"] = int(feats.features.shape[1])
    ens = (np.asarray(feats.features[setup.ens_rows], dtype=np.float64) if setup.ens_rows is not None else None)
    return _ModelRun(entry=entry, scores=scores, failures=failures, timings=timings, meta=meta,
                     extract_wall=extract_wall, ens_features=ens)


def _score_metrics(setup: _Setup, entry: Any, feats: Any, model_opts: dict[str, dict[str, Any]],
                   ) -> tuple[dict[str, float | None], dict[str, str], dict[str, float]]:
    """Every metric on one model's features: (scores, failures, seconds per computed metric). None marks a metric
    that does not apply (no source head, no source statistics) or failed; scores already in the cache are read,
    fresh ones written to it."""
    cache_entry = setup.cache.entry(feats.meta["cache_key"]) if setup.cache is not None else None
    known = cache_entry.read_scores() if cache_entry is not None else {}
    scores: dict[str, float | None] = {}
    failures: dict[str, str] = {}
    fresh: dict[str, float | None] = {}
    seconds: dict[str, float] = {}
    stats = probs = None
    for m in setup.metrics:
        if needs_source_probs(m) and feats.source_probs is None:
            scores[m] = None  # not applicable: the model has no source classifier head
            continue
        if metric_info(m).get("needs_source_stats") and "source_mean" not in model_opts.get(m, {}):
            scores[m] = None  # not applicable: no source-domain feature statistics for this model
            continue
        skey = score_key(m, model_opts.get(m, {}), setup.labels_digest)
        if skey in known:
            scores[m] = known[skey]
            continue
        t1 = time.perf_counter()
        try:
            if needs_source_probs(m):
                probs = probs if probs is not None else source_prob_stats(feats.source_probs, len(setup.y), m)
                scores[m] = fresh[skey] = score_prepared(m, probs, setup.y, probs.p, model_opts.get(m, {}))
            else:
                stats = stats or FeatureStats(as_features(feats.features))
                scores[m] = fresh[skey] = score_prepared(m, stats, setup.y, None, model_opts.get(m, {}))
        except MetricError as exc:  # this metric on this model: reported as failed, the others go on
            scores[m] = None
            if str(exc) not in failures.values():  # broken features fail every metric: one warning
                log.warning("%s (%s), metric %s failed: %s", entry.display_name, entry.ref, m, exc)
            failures[m] = str(exc)
        seconds[m] = time.perf_counter() - t1
    if cache_entry is not None and fresh:
        cache_entry.write_scores(fresh)
    return scores, failures, seconds


def _fail_if_nothing_scored(runs: list[_ModelRun], names: list[str]) -> None:
    """Nothing to rank (no metric computed for any model, and some failed): the first failure is the error."""
    if any(r.scores[m] is not None for m in names for r in runs):
        return
    first = next(((r.entry, m, why) for r in runs for m, why in r.failures.items()), None)
    if first is not None:
        e, m, why = first
        raise MetricError(f"no metric could be computed for any model; {e.display_name} ({e.ref}), metric {m}: "
                          f"{why}")


def _model_scores(runs: list[_ModelRun], names: list[str]) -> list[ModelScores]:
    """Each model's scores, per-metric ranks and consensus, best consensus first."""
    table = {m: [r.scores[m] for r in runs] for m in names}
    cscore, crank = consensus(table, len(runs))
    ranks = {m: metric_ranks(table[m]) for m in names}
    models = [
        ModelScores(model=r.entry.ref, name=r.entry.display_name, scores=r.scores,
                    ranks={m: ranks[m][i] for m in names}, consensus_rank=crank[i], consensus_score=cscore[i],
                    metadata=r.meta, timings=r.timings, failures=r.failures)
        for i, r in enumerate(runs)
    ]
    models.sort(key=lambda m: m.consensus_rank)
    return models


def _choose_ensemble(runs: list[_ModelRun], models: list[ModelScores], k: int, theta: float) -> dict[str, Any]:
    """The ``k`` models that transfer well together (:func:`~transferlab.rank._ensemble.select_ensemble`), with
    their display names."""
    from ._ensemble import select_ensemble

    features = {r.entry.ref: r.ens_features for r in runs}
    quality = {m.model: m.consensus_score for m in models if m.consensus_score is not None}
    choice = select_ensemble(features, quality, k, theta=theta)
    return choice.to_dict() | {"names": [next(m.name for m in models if m.model == r) for r in choice.models]}


def _with_source_stats(opts: dict[str, dict[str, Any]], names: list[str], backbone: Any, size: int | None,
                       batch_size: int, cache: Any) -> dict[str, dict[str, Any]]:
    """Metric options plus, for metrics that need them (PED), the model's source-domain feature statistics, when the
    model knows its source data (``backbone.source_data()``, e.g. the small zoo's built-in pretraining sets). The
    source features are extracted at the target's input size and cached like any other."""
    wanted = [m for m in names if metric_info(m).get("needs_source_stats") and "source_mean" not in opts.get(m, {})]
    source = getattr(backbone, "source_data", None)
    if not wanted or source is None:
        return opts
    from ..zoo import extract_features

    sf = np.asarray(extract_features(backbone, source(), image_size=size, batch_size=batch_size, cache=cache).features,
                    dtype=np.float64)
    found = {"source_mean": sf.mean(0), "source_std": sf.std(0)}
    return {**opts, **{m: {**opts.get(m, {}), **found} for m in wanted}}


def _baseline_notes(result: RankResult) -> list[str]:
    """Say plainly when a pretrained model fails to beat a baseline (pixels / random init) on consensus."""
    baselines = [m for m in result.models if m.metadata.get("baseline")]
    if not baselines or len(baselines) == len(result.models):  # nothing pretrained to compare
        return []
    best_base = min(baselines, key=lambda m: m.consensus_rank)
    losers = [m for m in result.models if not m.metadata.get("baseline") and m.consensus_rank > best_base.consensus_rank]
    if not losers:
        return [f"Every pretrained model ranks ahead of the baselines (best baseline: {best_base.name}, "
                f"consensus rank {best_base.consensus_rank})."]
    what = "raw inputs" if "pixel" in best_base.model or "tfidf" in best_base.model else "random weights"
    if len(losers) > 3:  # one note, not a wall of them
        return [f"{len(losers)} pretrained models rank behind the baseline {best_base.name} (consensus rank "
                f"{best_base.consensus_rank}): {', '.join(m.name for m in losers)}. Their pretrained features do not "
                f"help this dataset more than {what}."]
    return [f"{m.name} ranks behind the baseline {best_base.name} (consensus {m.consensus_rank} vs "
            f"{best_base.consensus_rank}): its pretrained features do not help this dataset more than {what}."
            for m in losers]
