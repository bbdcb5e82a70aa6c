"""``rank``: score every model of a zoo on a dataset with every metric."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import check_device, check_precision, runtime
from ..data import Dataset, check_rankable, load_dataset
from ..errors import MetricError, TransferlabError
from ._consensus import consensus, metric_ranks
from ._model_run import ModelRun, Setup, score_zoo_on
from ._pairs import add_retrieval, pair_backbones
from ._pipeline import score_zoo_local
from ._result import ModelScores, RankResult
from ._score import check_metric_options, list_metrics, metric_info
from ._validate import as_labels

log = logging.getLogger(__name__)


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
    backend: str | Any = "local",
    device: str | None = None,
    precision: str | None = None,
    layers: str = "last",
) -> RankResult:
    """Rank the models of ``zoo`` for ``dataset`` without fine-tuning.

    ``dataset``: a :class:`~transferlab.data.Dataset` or a reference (its train split is used). ``zoo``: a
    :class:`~transferlab.zoo.Zoo`, a zoo reference (``builtin:vision``, a YAML file) or a list of model references.
    ``metrics``: names (default: all registered). ``limit``: a class-stratified sample of that many examples.
    Features are cached (``cache_dir``, else ``$TRANSFERLAB_CACHE``, else the user cache directory).
    ``ensemble``: also choose that many models that transfer well together (``result.ensemble``; see
    :mod:`transferlab.rank._ensemble` for the objective). ``backend``: ``local`` (default: every model in this
    process, pipelined: rank._pipeline) or a backend of the bench harness (``transferlab.bench.backend_of("ray",
    address, cpus_per_run)``): one job per model, which extracts its features with the feature cache of the machine
    it runs on (``cache_dir`` as given, else that machine's default) and returns the scores; the same scores as
    local. There, a model that fails is reported and the others go on, then one error names the failed ones.
    ``device`` (auto, cpu, cuda, cuda:N, mps; None: the enclosing runtime's, else auto) and ``precision`` (fp32,
    bf16, fp16): where and how the forward passes run (:func:`transferlab.zoo.extract_features`); on another
    backend, on the machine each model's job runs on (checked there: the driver may have no GPU).
    ``layers``: last (the output), mean (of the layers' pooled features), best (each metric's best layer; zoo._layers).
    """
    from ..zoo import FeatureCache, check_layers

    t_total = time.perf_counter()
    ds = _target(dataset, limit, seed)
    z = _as_zoo(zoo)
    names, opts = _checked_metrics(metrics, metric_options)
    backbones = _backbones(z, ds, trust_pickle)
    cache = FeatureCache(cache_dir) if use_cache else None
    if cache is not None:
        cache.check_writable()
    y, _ = as_labels(ds.labels, len(ds))
    setup = Setup(ds=ds, zoo=z, backbones=backbones, metrics=names, options=opts, cache=cache, y=y,
                   labels_digest=hashlib.sha256(y.tobytes()).hexdigest(), image_size=image_size,
                   batch_size=batch_size, ens_rows=_ensemble_rows(len(ds), seed) if ensemble else None,
                   layers=check_layers(layers))
    if _is_local(backend):
        with runtime(device, precision):
            runs = score_zoo_local(setup, threads, progress)  # metrics of a model while the next extracts
    else:
        runs = score_zoo_on(backend, setup, {"cache_dir": str(cache_dir) if cache_dir is not None else None,
                                             "use_cache": use_cache, "threads": threads, "trust_pickle": trust_pickle,
                                             "device": device and check_device(device),
                                             "precision": precision and check_precision(precision)}, progress)
    _fail_if_nothing_scored(runs, names)
    models = _model_scores(runs, names, setup)
    total = time.perf_counter() - t_total
    forward = sum((r.timings["forward_seconds"] for r in runs), 0.0)
    result = RankResult(
        dataset=ds.info() | {"limit": limit}, zoo=z.name, metrics=names, models=models,
        cache=_cache_summary(runs, cache is not None),
        timings={"total_seconds": total, "extraction_seconds": sum((r.extract_wall for r in runs), 0.0),
                 "forward_seconds": forward,
                 "metrics_seconds": sum((dt for r in runs for dt in r.timings["metrics"].values()), 0.0),
                 "overhead_seconds": max(0.0, total - forward)},
        options={"image_size": image_size, "batch_size": batch_size, "threads": threads, "seed": seed,
                 "cache_dir": str(cache.root) if cache is not None else None, "layers": layers})
    result.notes.extend(_baseline_notes(result))
    result.notes.extend(f"{m.name}: {k} failed ({why})" for m in models for k, why in m.failures.items())
    if ensemble:
        result.ensemble = _choose_ensemble(runs, models, ensemble, ensemble_theta)
    return result


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
    return pair_backbones(backbones, ds)  # sentence pairs: each model encodes both sides (rank._pairs)


def _ensemble_rows(n: int, seed: int) -> np.ndarray:
    """The rows of the target on which the ensemble compares models (CKA): a sorted subsample of at most 500."""
    return np.sort(np.random.default_rng(seed).choice(n, min(500, n), replace=False))


def _is_local(backend: Any) -> bool:
    """True for this process (``"local"``, or the harness's local backend); False for another backend; an unknown
    name is refused (rank cannot build a Ray backend itself: the bench harness owns them)."""
    if isinstance(backend, str):
        if backend == "local":
            return True
        raise TransferlabError(f"rank(backend={backend!r}): give 'local' or a backend object, e.g. "
                               "transferlab.bench.backend_of('ray', address) (the CLI: transferlab rank --backend "
                               "ray --address ...)")
    if not callable(getattr(backend, "run", None)):
        raise TransferlabError(f"rank(backend=...) takes 'local' or a backend with a run() method, got {backend!r}")
    return getattr(backend, "name", None) == "local"


def _cache_summary(runs: list[ModelRun], cached: bool) -> dict[str, Any]:
    """Whether the features came from the cache (``warm``), were computed here (``cold``), both (``partly warm``)
    or no cache was used (``off``); and ``cold``: what computing them and their scores cost, summed over the models
    (this run's where it computed them, the cache's record where it read them; ``complete`` when every model's
    was recorded, else ``not_recorded`` names the others)."""
    colds = [r.timings["cold"] for r in runs]
    hits = sum(c["features_from_cache"] for c in colds)
    state = "off" if not cached else "cold" if hits == 0 else "warm" if hits == len(runs) else "partly warm"

    def total(key: str) -> float:
        return float(sum(c.get(key) or 0.0 for c in colds))

    missing = [r.entry.display_name for r, c in zip(runs, colds, strict=True) if not c["complete"]]
    dates = sorted(c["recorded_at"] for c in colds if c.get("recorded_at"))
    return {"state": state, "models": len(runs), "features_from_cache": hits,
            "scores_from_cache": sum(c["scores_from_cache"] for c in colds),
            "cold": {"seconds": total("extract_seconds") + total("metrics_seconds"),
                     "extraction_seconds": total("extract_seconds"), "forward_seconds": total("forward_seconds"),
                     "metrics_seconds": total("metrics_seconds"), "recorded_at": dates[0] if dates else None,
                     "complete": not missing, "not_recorded": missing}}


def _fail_if_nothing_scored(runs: list[ModelRun], names: list[str]) -> None:
    """Nothing to rank (no metric computed for any model, and some failed): the first failure is the error."""
    if any(r.scores[m] is not None for m in names for r in runs):
        return
    first = next(((r.entry, m, why) for r in runs for m, why in r.failures.items()), None)
    if first is not None:
        e, m, why = first
        raise MetricError(f"no metric could be computed for any model; {e.display_name} ({e.ref}), metric {m}: "
                          f"{why}")


def _model_scores(runs: list[ModelRun], names: list[str], setup: Setup | None = None) -> list[ModelScores]:
    """Each model's scores, per-metric ranks and consensus, best consensus first; on a matching task of sentence
    pairs, each model's zero-shot accuracy@k too (``metadata["retrieval"]``: :mod:`transferlab.rank._pairs`)."""
    if setup is not None:
        add_retrieval(setup, runs)
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


def _choose_ensemble(runs: list[ModelRun], models: list[ModelScores], k: int, theta: float) -> dict[str, Any]:
    """The ``k`` models that transfer well together (:func:`~transferlab.rank._ensemble.select_ensemble`), with
    their display names."""
    from ._ensemble import select_ensemble

    features = {r.entry.ref: r.ens_features for r in runs}
    quality = {m.model: m.consensus_score for m in models if m.consensus_score is not None}
    choice = select_ensemble(features, quality, k, theta=theta)
    return choice.to_dict() | {"names": [next(m.name for m in models if m.model == r) for r in choice.models]}


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
