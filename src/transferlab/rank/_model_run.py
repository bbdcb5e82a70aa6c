"""One model of a ``rank``: its features (cached), then every metric on them — in this process, or as a job a backend
(the bench harness's local or Ray backend) runs where it likes: :func:`score_model_run` takes plain, picklable
arguments, extracts with the feature cache of the machine it runs on and returns the scores."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import MetricError, TransferlabError
from ._score import metric_info, needs_source_probs, score_prepared
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


@dataclass(frozen=True)
class Setup:
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
    layers: str = "last"  # which layers' features are scored: last | mean | best (transferlab.zoo._layers)


@dataclass(frozen=True)
class ModelRun:
    """One model scored: what its ModelScores and the result's totals are made of."""

    entry: Any  # the ZooModel
    scores: dict[str, float | None]
    failures: dict[str, str]  # metric -> why it failed
    timings: dict[str, Any]  # extract/forward seconds, cache hit, seconds per computed metric
    meta: dict[str, Any]
    extract_wall: float  # seconds spent in extract_features, cache reads included
    ens_features: np.ndarray | None  # float64 features of the ensemble's subsample


@dataclass(frozen=True)
class Extracted:
    """The first stage of scoring a model: its features and the metric options they need (with its source
    statistics), ready for :func:`score_extracted` (in this thread or a pipeline's worker)."""

    feats: Any  # transferlab.zoo.Features
    layer_opts: list[dict[str, dict[str, Any]]]  # metric options: one set, or one per layer (layers="best")
    extract_wall: float  # seconds spent in extract_features, cache reads included


def score_model(setup: Setup, entry: Any, backbone: Any, advance: Callable[[int], None] | None) -> ModelRun:
    """One model: its features (cached), then every metric on them; ``advance(k)`` reports k examples done."""
    return score_extracted(setup, entry, backbone, extract_model(setup, backbone, advance))


def extract_model(setup: Setup, backbone: Any, advance: Callable[[int], None] | None) -> Extracted:
    """One model's features (cached) and its metric options; ``advance(k)`` reports k examples done."""
    from ..zoo import extract_features

    t0 = time.perf_counter()
    size = setup.image_size or (backbone.default_size(setup.ds) if hasattr(backbone, "default_size") else None)
    feats = extract_features(backbone, setup.ds, image_size=size, batch_size=setup.batch_size, cache=setup.cache,
                             progress=advance, layers=setup.layers)
    extract_wall = time.perf_counter() - t0
    layer_opts = source_stat_options(setup.options, setup.metrics, backbone, size, setup.batch_size, setup.cache,
                                     setup.layers)
    return Extracted(feats=feats, layer_opts=layer_opts, extract_wall=extract_wall)


def score_extracted(setup: Setup, entry: Any, backbone: Any, got: Extracted) -> ModelRun:
    """Every metric on one model's extracted features: the second stage of scoring a model."""
    feats, layer_opts = got.feats, got.layer_opts
    if feats.layers is not None:  # layers="best": every layer scored, each metric's best kept
        from ._layers import score_layers

        scores, failures, seconds, cold_seconds, layer_meta = score_layers(setup, entry, feats, layer_opts,
                                                                           _score_metrics)
    else:
        scores, failures, seconds, cold_seconds = _score_metrics(setup, entry, feats, layer_opts[-1])
        layer_meta = {}
    timings: dict[str, Any] = {"extract_seconds": feats.total_seconds, "forward_seconds": feats.seconds,
                               "cache_hit": feats.cache_hit, "metrics": seconds,
                               "cold": _cold_timings(feats, cold_seconds, len(seconds))}
    meta = {**backbone.metadata(), **{k: v for k, v in entry.model_dump().items()
                                      if k not in ("ref", "name") and v is not None}}
    meta["feature_dim"] = int(feats.features.shape[1])
    if "layers" in feats.meta:
        meta["layers"] = {**feats.meta["layers"], **layer_meta}
    ens = (np.asarray(feats.features[setup.ens_rows], dtype=np.float64) if setup.ens_rows is not None else None)
    return ModelRun(entry=entry, scores=scores, failures=failures, timings=timings, meta=meta,
                     extract_wall=got.extract_wall, ens_features=ens)


def _score_metrics(setup: Setup, entry: Any, feats: Any, model_opts: dict[str, dict[str, Any]], key_suffix: str = "",
                   ) -> tuple[dict[str, float | None], dict[str, str], dict[str, float], dict[str, float | None]]:
    """Every metric on one model's features: (scores, failures, seconds per computed metric, seconds per metric
    when it was computed: now, or as the cache recorded it, None where it recorded none). None marks a metric that
    does not apply (no source head, no source statistics) or failed; scores already in the cache are read, fresh
    ones written to it with their seconds, under their score keys plus ``key_suffix`` (one layer's, for
    ``layers="best"``)."""
    cache_entry = setup.cache.entry(feats.meta["cache_key"]) if setup.cache is not None else None
    known = cache_entry.read_scores() if cache_entry is not None else {}
    known_seconds = cache_entry.read_score_seconds() if known else {}
    scores: dict[str, float | None] = {}
    failures: dict[str, str] = {}
    fresh: dict[str, float | None] = {}
    seconds: dict[str, float] = {}
    cold: dict[str, float | None] = {}
    keys: dict[str, str] = {}
    stats = probs = None
    for m in setup.metrics:
        if needs_source_probs(m) and feats.source_probs is None:
            scores[m] = None  # not applicable: the model has no source classifier head
            continue
        if metric_info(m).get("needs_source_stats") and "source_mean" not in model_opts.get(m, {}):
            scores[m] = None  # not applicable: no source-domain feature statistics for this model
            continue
        skey = keys[m] = score_key(m, model_opts.get(m, {}), setup.labels_digest) + key_suffix
        if skey in known:
            scores[m] = known[skey]
            cold[m] = known_seconds.get(skey)
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
        seconds[m] = cold[m] = time.perf_counter() - t1
    if cache_entry is not None and fresh:
        cache_entry.write_scores(fresh, {keys[m]: dt for m, dt in seconds.items() if keys[m] in fresh})
    return scores, failures, seconds, cold


def _cold_timings(feats: Any, metric_seconds: dict[str, float | None], computed: int) -> dict[str, Any]:
    """What this model's features and scores cost when they were computed (cold): this run's where it computed
    them, the cache's record where it read them. ``complete``: every part was recorded (a cache entry written before
    timings were recorded, or a resumed extraction, leaves it False)."""
    rec = feats.cold or {}
    times = list(metric_seconds.values())
    return {"features_from_cache": bool(feats.cache_hit), "scores_from_cache": len(times) - computed,
            "forward_seconds": rec.get("forward_seconds"), "extract_seconds": rec.get("extract_seconds"),
            "metrics_seconds": float(sum(t for t in times if t is not None)), "recorded_at": rec.get("recorded_at"),
            "complete": bool(rec) and rec.get("chunks_computed") == rec.get("chunks")
                        and all(t is not None for t in times)}


def source_stat_options(opts: dict[str, dict[str, Any]], names: list[str], backbone: Any, size: int | None,
                        batch_size: int, cache: Any, layers: str = "last") -> list[dict[str, dict[str, Any]]]:
    """Metric options ``opts`` plus, for the metrics of ``names`` that need them (PED), the model's source-domain
    feature statistics, when the model knows its source data (``backbone.source_data()``, e.g. the small zoo's
    built-in pretraining sets). The source features are extracted at the target's input size ``size``, with the same
    ``layers``, and cached like any other. One set of options, or with ``layers="best"`` and source statistics, one
    per layer (the statistics of that layer). ``rank`` and ``rank_adaptive`` both add them here."""
    wanted = [m for m in names if metric_info(m).get("needs_source_stats") and "source_mean" not in opts.get(m, {})]
    source = getattr(backbone, "source_data", None)
    if not wanted or source is None:
        return [opts]
    from ..zoo import extract_features

    sf = extract_features(backbone, source(), image_size=size, batch_size=batch_size, cache=cache, layers=layers)
    out = []
    for layer in (sf.layers if sf.layers is not None else [sf.features]):
        x = np.asarray(layer, dtype=np.float64)
        found = {"source_mean": x.mean(0), "source_std": x.std(0)}
        out.append({**opts, **{m: {**opts.get(m, {}), **found} for m in wanted}})
    return out


def score_model_run(ref: str, entry: dict[str, Any], dataset: Any, metrics: list[str],
                    options: dict[str, dict[str, Any]], image_size: int | None, batch_size: int,
                    cache_dir: str | None, use_cache: bool, threads: int | None, trust_pickle: bool,
                    ens_rows: np.ndarray | None, device: str | None = None,
                    precision: str | None = None, layers: str = "last") -> dict[str, Any]:
    """One model of a rank, as a job: ``ref`` resolved here, ``dataset`` (a Dataset, already sampled) checked,
    features extracted with this machine's feature cache (``cache_dir``, else ``$TRANSFERLAB_CACHE``, else the user
    cache directory; none without ``use_cache``) on ``device`` at ``precision`` (None: auto, fp32), from the
    ``layers`` the rank asked for, every metric scored (scores cached next to the features). Returns what
    :class:`ModelRun` holds, less the zoo entry."""
    from .._runtime import runtime
    from ..zoo import FeatureCache, ZooModel, resolve_model
    from ._pairs import pair_backbones

    backbone = pair_backbones([resolve_model(ref, trust_pickle=trust_pickle)], dataset)[0]  # pairs: both sides
    backbone.check_dataset(dataset)
    y, _ = as_labels(dataset.labels, len(dataset))
    setup = Setup(ds=dataset, zoo=None, backbones=[backbone], metrics=list(metrics), options=options,
                  cache=FeatureCache(cache_dir) if use_cache else None, y=y,
                  labels_digest=hashlib.sha256(y.tobytes()).hexdigest(), image_size=image_size,
                  batch_size=batch_size, ens_rows=ens_rows, layers=layers)
    with runtime(device, precision), thread_limit(threads):
        run = score_model(setup, ZooModel(**entry), backbone, None)
    return {"scores": run.scores, "failures": run.failures, "timings": run.timings, "meta": run.meta,
            "extract_wall": run.extract_wall, "ens_features": run.ens_features}


@dataclass(frozen=True)
class _Job:
    """What a backend reads of a job (the bench harness's ``Job`` without its cache key: rank caches features and
    scores itself, in the feature cache)."""

    label: str
    fn: Callable[..., dict[str, Any]]
    kwargs: dict[str, Any]


def score_zoo_on(backend: Any, setup: Setup, run_args: dict[str, Any], progress: bool) -> list[ModelRun]:
    """Every model of the zoo scored by ``backend`` (one job per model: :func:`score_model_run`), in the zoo's order,
    with one bar over the models. A model that fails is reported as it fails and the others go on; then one
    :class:`TransferlabError` names every failed model."""
    from .._progress import progress as progress_bars

    entries = list(setup.zoo.models)
    jobs = [_Job(e.display_name, score_model_run,
                 {"ref": e.ref, "entry": e.model_dump(), "dataset": setup.ds, "metrics": setup.metrics,
                  "options": setup.options, "image_size": setup.image_size, "batch_size": setup.batch_size,
                  "ens_rows": setup.ens_rows, "layers": setup.layers, **run_args}) for e in entries]
    records: dict[int, dict[str, Any]] = {}
    errors: dict[int, BaseException] = {}
    with progress_bars(progress) as bars:
        task = bars.add(f"rank {getattr(setup.zoo, 'name', 'zoo')} ({backend.name})", len(jobs))

        def finished(i: int, record: dict[str, Any]) -> None:
            records[i] = record
            bars.advance(task, note=entries[i].display_name)

        def failed(i: int, error: BaseException) -> None:
            errors[i] = error
            log.error("rank: %s (%s) failed: %s", entries[i].display_name, entries[i].ref, error)
            bars.advance(task, note=f"{entries[i].display_name} failed")

        backend.run(jobs, lambda i: bars.note(task, entries[i].display_name), finished, failed)
    if errors:
        raise TransferlabError(f"rank: {len(errors)} of {len(jobs)} models failed (the others' features and "
                               "scores are cached: a rerun computes only the failed ones):" + "".join(
                                   f"\n  {entries[i].display_name} ({entries[i].ref}): {errors[i]}"
                                   for i in sorted(errors))) from errors[min(errors)]
    return [ModelRun(entry=e, **records[i]) for i, e in enumerate(entries)]
