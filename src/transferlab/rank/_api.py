"""``rank``: score every model of a zoo on a dataset with every metric."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
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
    from ..zoo import FeatureCache, Zoo, ZooModel, extract_features, load_zoo, resolve_model

    t_total = time.perf_counter()
    ds = load_dataset(dataset) if not isinstance(dataset, Dataset) else dataset
    if limit:
        ds = ds.stratified_sample(limit, seed=seed)
    check_rankable(ds)
    if isinstance(zoo, Zoo):
        z = zoo
    elif isinstance(zoo, (list, tuple)):
        z = Zoo(name="custom", models=[ZooModel(ref=r) for r in zoo])
    else:
        z = load_zoo(zoo)
    names = _resolve_metrics(metrics)
    opts = metric_options or {}
    for m in names:
        check_metric_options(m, opts.get(m, {}))  # a typo in an option fails before any work
    backbones = [resolve_model(m.ref, trust_pickle=trust_pickle) for m in z.models]  # resolve all first: a typo fails before any work
    for b in backbones:
        b.check_dataset(ds)
    cache = FeatureCache(cache_dir) if use_cache else None
    if cache is not None:
        cache.check_writable()

    y, _ = as_labels(ds.labels, len(ds))
    labels_digest = hashlib.sha256(y.tobytes()).hexdigest()
    per_model: list[dict[str, Any]] = []
    table: dict[str, list[float | None]] = {m: [] for m in names}
    ens_rows = (np.sort(np.random.default_rng(seed).choice(len(ds), min(500, len(ds)), replace=False))
                if ensemble else None)  # CKA between models on a subsample of the target
    ens_features: dict[str, np.ndarray] = {}
    t_extract = t_metrics = t_forward = 0.0
    with thread_limit(threads), progress_bars(progress) as bars:
        for entry, backbone in zip(z.models, backbones, strict=True):
            task = bars.add(entry.display_name, len(ds))
            t0 = time.perf_counter()
            size = image_size or (backbone.default_size(ds) if hasattr(backbone, "default_size") else None)
            feats = extract_features(
                backbone, ds, image_size=size, batch_size=batch_size, cache=cache,
                progress=(lambda k, task=task: bars.advance(task, k)) if bars.enabled else None,
            )
            t_extract += time.perf_counter() - t0
            t_forward += feats.seconds
            timings: dict[str, Any] = {"extract_seconds": feats.total_seconds, "forward_seconds": feats.seconds,
                                       "cache_hit": feats.cache_hit, "metrics": {}}
            model_opts = _with_source_stats(opts, names, backbone, size, batch_size, cache)
            scores: dict[str, float | None] = {}
            failures: dict[str, str] = {}
            cache_entry = cache.entry(feats.meta["cache_key"]) if cache is not None else None
            known = cache_entry.read_scores() if cache_entry is not None else {}
            fresh: dict[str, float | None] = {}
            stats = probs = None
            for m in names:
                if needs_source_probs(m) and feats.source_probs is None:
                    scores[m] = None  # not applicable: the model has no source classifier head
                    continue
                if metric_info(m).get("needs_source_stats") and "source_mean" not in model_opts.get(m, {}):
                    scores[m] = None  # not applicable: no source-domain feature statistics for this model
                    continue
                skey = score_key(m, model_opts.get(m, {}), labels_digest)
                if skey in known:
                    scores[m] = known[skey]
                    continue
                t1 = time.perf_counter()
                try:
                    if needs_source_probs(m):
                        probs = probs if probs is not None else source_prob_stats(feats.source_probs, len(y), m)
                        scores[m] = fresh[skey] = score_prepared(m, probs, y, probs.p, model_opts.get(m, {}))
                    else:
                        stats = stats or FeatureStats(as_features(feats.features))
                        scores[m] = fresh[skey] = score_prepared(m, stats, y, None, model_opts.get(m, {}))
                except MetricError as exc:  # this metric on this model: reported as failed, the others go on
                    scores[m] = None
                    if str(exc) not in failures.values():  # broken features fail every metric: one warning
                        log.warning("%s (%s), metric %s failed: %s", entry.display_name, entry.ref, m, exc)
                    failures[m] = str(exc)
                dt = time.perf_counter() - t1
                timings["metrics"][m] = dt
                t_metrics += dt
            if cache_entry is not None and fresh:
                cache_entry.write_scores(fresh)
            for m in names:
                table[m].append(scores[m])
            meta = {**backbone.metadata(), **{k: v for k, v in entry.model_dump().items()
                                              if k not in ("ref", "name") and v is not None}}
            meta["feature_dim"] = int(feats.features.shape[1])
            if ens_rows is not None:
                ens_features[entry.ref] = np.asarray(feats.features[ens_rows], dtype=np.float64)
            per_model.append({"entry": entry, "scores": scores, "timings": timings, "meta": meta,
                              "failures": failures})
            bars.describe(task, f"{entry.display_name} [green]done")

    if not any(v is not None for vals in table.values() for v in vals):
        first = next(((pm["entry"], m, why) for pm in per_model for m, why in pm["failures"].items()), None)
        if first is not None:  # nothing to rank: the first reason is the error
            e, m, why = first
            raise MetricError(f"no metric could be computed for any model; {e.display_name} ({e.ref}), metric {m}: "
                              f"{why}")
    cscore, crank = consensus(table, len(per_model))
    ranks = {m: metric_ranks(table[m]) for m in names}
    models = [
        ModelScores(model=pm["entry"].ref, name=pm["entry"].display_name, scores=pm["scores"],
                    ranks={m: ranks[m][i] for m in names}, consensus_rank=crank[i], consensus_score=cscore[i],
                    metadata=pm["meta"], timings=pm["timings"], failures=pm["failures"])
        for i, pm in enumerate(per_model)
    ]
    models.sort(key=lambda m: m.consensus_rank)
    total = time.perf_counter() - t_total
    result = RankResult(
        dataset=ds.info() | {"limit": limit},
        zoo=z.name,
        metrics=names,
        models=models,
        timings={"total_seconds": total, "extraction_seconds": t_extract, "forward_seconds": t_forward,
                 "metrics_seconds": t_metrics, "overhead_seconds": max(0.0, total - t_forward)},
        options={"image_size": image_size, "batch_size": batch_size, "threads": threads, "seed": seed,
                 "cache_dir": str(cache.root) if cache is not None else None},
    )
    result.notes.extend(_baseline_notes(result))
    result.notes.extend(f"{m.name}: {k} failed ({why})" for m in models for k, why in m.failures.items())
    if ensemble:
        from ._ensemble import select_ensemble

        quality = {m.model: m.consensus_score for m in models if m.consensus_score is not None}
        choice = select_ensemble(ens_features, quality, ensemble, theta=ensemble_theta)
        result.ensemble = choice.to_dict() | {"names": [next(m.name for m in models if m.model == r)
                                                        for r in choice.models]}
    return result


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
