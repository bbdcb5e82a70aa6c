"""``bench rank``: every metric's ranking quality measured against real fine-tuning on the user's own targets.

For each target, ``rank`` scores every model of the zoo (features and scores cached); every (model, target) cell is
fitted with a ``fit`` protocol for its ground-truth test accuracy (cached, resumable; locally or as Ray tasks); then
each metric, the consensus and the baselines (random scores, parameter count, source accuracy, kNN) get a weighted
Kendall tau, Kendall tau and rel@1 per target, with a bootstrap interval over models, and their mean over targets.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import TransferlabError
from ._harness import backend_of
from ._priors import prior_values
from ._quality import random_baseline, rank_quality
from ._rank_cost import cost_line, ranking_cost
from ._rank_truth import ground_truth
from ._result import DeclaredResult
from ._tables import rank_tables, rank_verdicts

log = logging.getLogger(__name__)


@dataclass
class BenchResult(DeclaredResult):
    zoo: str
    targets: list[str]
    protocol: str
    models: list[dict[str, Any]]  # ref, name, metadata
    metrics: list[str]
    ground_truth: dict[str, dict[str, float | None]]  # target -> model -> test accuracy
    scores: dict[str, dict[str, dict[str, float | None]]]  # target -> metric -> model -> score
    quality: dict[str, dict[str, dict[str, Any]]]  # metric -> target -> quality
    baselines: dict[str, dict[str, dict[str, Any]]]  # baseline -> target -> quality
    cost: dict[str, Any]  # :func:`_cost`
    options: dict[str, Any] = field(default_factory=dict)
    ensemble: dict[str, dict[str, Any]] | None = None  # target -> chosen set and its validation
    #: per target, per model: the linear-probe reference, the protocol chosen, the grid's results, the flags
    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)  # ground_truth_checks(): intervals, ties, flags, warnings
    #: with replicates K > 1: per replicate, target -> model -> test accuracy (``ground_truth`` is their mean)
    replicates: list[dict[str, dict[str, float | None]]] | None = None
    priors: dict[str, dict[str, Any]] | None = None  # prior -> values and sources per model (bench/_priors.py)
    evidence: dict[str, Any] | None = None  # Δτw over the best prior; the noise ceiling (bench/_evidence.py)

    @staticmethod
    def _summary(per_target: dict[str, dict[str, Any]], targets: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("weighted_tau", "kendall_tau", "rel_at_1"):
            vals = {t: per_target[t][key] for t in targets}
            finite = [v for v in vals.values() if v is not None]
            out[key] = {**vals, "mean": float(np.mean(finite)) if finite else None}
        out["weighted_tau_ci"] = {t: per_target[t]["weighted_tau_ci"] for t in targets}
        out["top_model"] = {t: per_target[t]["top_model"] for t in targets}
        return out

    def _data(self) -> dict[str, Any]:
        d = {
            "transferlab_version": __version__, "zoo": self.zoo, "targets": list(self.targets),
            "protocol": self.protocol, "models": self.models,
            "metrics": {m: self._summary(self.quality[m], self.targets) for m in self.quality},
            "baselines": {b: self._summary(self.baselines[b], self.targets) for b in self.baselines},
            "ground_truth": self.ground_truth, "scores": self.scores, "cost": self.cost, "options": self.options,
            "ensemble": self.ensemble, "cells": self.cells, "checks": self.checks,
            "ground_truth_replicates": self.replicates, "priors": self.priors, "evidence": self.evidence,
        }
        return {**d, "verdicts": rank_verdicts(d)}  # which score to trust on this zoo

    json_name = "bench.json"
    report = "bench_report_html"
    tables_from = staticmethod(rank_tables)

    def cost_line(self) -> str:
        """One line on what ranking cost against the ground truth (:func:`cost_line`)."""
        return cost_line(self.cost)

    def table(self, key: str = "weighted_tau") -> list[tuple[str, str, list[float | None], float | None]]:
        """(kind, name, per-target values, mean) rows sorted by mean, metrics then baselines."""
        rows = []
        for kind, block in (("metric", self.quality), ("baseline", self.baselines)):
            for name, per_target in block.items():
                vals = [per_target[t][key] for t in self.targets]
                finite = [v for v in vals if v is not None]
                rows.append((kind, name, vals, float(np.mean(finite)) if finite else None))
        return sorted(rows, key=lambda r: (r[0] != "metric", -(r[3] if r[3] is not None else -np.inf)))


def bench_rank(
    zoo: Any,
    targets: Sequence[str] | str,
    *,
    protocol: str = "linear_probe",
    backend: str | Any = "local",
    metrics: Sequence[str] | str | None = None,
    limit: int | None = None,
    image_size: int | None = None,
    epochs: int = 15,
    patience: int = 3,
    grid: dict[str, Any] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    device: str | None = None,
    precision: str | None = None,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    ray_address: str | None = None,
    progress: bool = False,
    trust_pickle: bool = False,
    ensemble: int | None = None,
    random_ensembles: int = 10,
    replicates: int = 1,
    lr_extend: int = 2,
    layers: str = "last",
) -> BenchResult:
    """Measure every metric's ranking quality on ``targets`` (dataset references) against ground truth from the
    ``fit`` method ``protocol`` (``linear_probe``: logistic regression on the cached features, seconds; ``finetune``,
    ``lora``, ``partial``...: per cell, a grid of learning rates, each point trained for up to ``epochs`` with early
    stopping after ``patience`` epochs without a better validation accuracy, the best validation point's test
    accuracy; ``best``: per cell, the protocol with the best validation accuracy). ``grid``: the grid of a training
    protocol, ``{"lr": [...], "head_lr_scale": [...]}``, or ``{protocol: grid}`` for ``best`` (default:
    :func:`~transferlab.bench._ground_truth.default_grid`). Models that cannot be trained (baselines) get their
    linear-probe accuracy, marked as a fallback, and are named before any work. ``limit``: a stratified sample of each
    train split, used by both the metrics and the ground truth. ``backend``: ``local`` or ``ray``: each model's
    ``rank`` (extraction and scores) and each ground-truth cell a Ray task of ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs on the cluster at ``address`` (default ``$RAY_ADDRESS``, else a local Ray;
    ``ray_address`` is its deprecated name). ``device``/``precision``: where and how each of those computes (the
    ensemble's validation runs here, on the default device).
    ``ensemble``: also choose K models per target (``rank(..., ensemble=K)``) and validate the choice: the test
    accuracy of a linear probe on their concatenated (standardised) features, against the best single model, the
    top-K by consensus and ``random_ensembles`` random K-sets. ``replicates`` K: fit every ground-truth cell K times
    with different seeds (validation split, initialisation, data order) to measure the ground truth's own noise (the
    noise ceiling); the ground truth is then the mean over the replicates. ``lr_extend``: a training cell whose best
    learning rate is the grid's largest or smallest tries up to this many more beyond it (0: the grid only).
    ``layers``: which features every ranking scores (``rank(layers=...)``: last, mean, best)."""
    if ray_address is not None:
        warnings.warn("bench_rank(ray_address=) is deprecated: use address=", DeprecationWarning, stacklevel=2)
        address = address or ray_address
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)  # an unknown one is refused before any work
    target_list, grids, z = _checked(zoo, targets, protocol, epochs, patience, grid)
    _check_options(replicates, lr_extend, layers)
    training = protocol != "linear_probe"
    plan = _Plan(zoo=z, targets=target_list, protocol=protocol, metrics=metrics, limit=limit, image_size=image_size,
                 seed=seed, n_boot=n_boot, grids=grids, fit_options=_fit_options(training, image_size, epochs, patience),
                 trust_pickle=trust_pickle, progress=progress, runner=runner, device=device, precision=precision,
                 ensemble=ensemble, random_ensembles=random_ensembles, replicates=replicates, lr_extend=lr_extend,
                 layers=layers)
    if training:  # before any work: the protocol applies, and which models get the fallback
        _warn_fallbacks(plan)
    ranked = _rank_targets(plan)
    models = _models(ranked.results[target_list[0]], z)
    truth = ground_truth(plan, models)
    priors = prior_values(models, image_size, trust_pickle)
    quality, baselines = _quality(plan, ranked, truth.accuracy, priors)
    ens = ({t: _validate_ensemble(plan, ranked.results[t], t, truth.accuracy[t]) for t in target_list}
           if ensemble else None)
    return BenchResult(zoo=z.name, targets=target_list, protocol=protocol, models=models, metrics=ranked.metrics,
                       ground_truth=truth.accuracy, scores=ranked.scores, quality=quality, baselines=baselines,
                       cost=ranking_cost(list(ranked.results.values()), ranked.seconds, truth.seconds,
                                         sum(bool(c.get("cached")) for c in truth.cells)),
                       options={"backend": runner.name, "limit": limit, "image_size": image_size, "seed": seed,
                                "epochs": epochs if training else None, "patience": patience if training else None,
                                "grid": grids or None, "n_boot": n_boot, "replicates": replicates,
                                "lr_extend": lr_extend if training else None, "layers": layers},
                       ensemble=ens, cells=truth.details, checks=truth.checks,
                       replicates=truth.replicates if replicates > 1 else None, priors=priors,
                       evidence=_evidence(plan, ranked, truth, priors, models))


@dataclass(frozen=True)
class _Plan:
    """A bench rank checked before any work: what each step (scores, ground truth, quality, ensemble) reads."""

    zoo: Any  # the Zoo, at least 3 models
    targets: list[str]
    protocol: str
    metrics: Sequence[str] | str | None  # as given to rank
    limit: int | None
    image_size: int | None
    seed: int
    n_boot: int
    grids: dict[str, dict[str, list[Any]]]  # :func:`_grids`
    fit_options: dict[str, Any]  # the ground truth's options (image size; epochs and patience when training)
    trust_pickle: bool
    progress: bool
    runner: Any  # the harness backend that runs every model's rank and every ground-truth cell
    device: str | None  # where they compute (None: the default where they run)
    precision: str | None
    ensemble: int | None  # K models chosen per target and validated; None: no ensemble
    random_ensembles: int  # random K-sets the chosen one is compared with
    replicates: int  # fits per ground-truth cell, each with its own seed
    lr_extend: int  # learning rates a cell at the grid's edge tries beyond it
    layers: str = "last"  # which features every ranking scores (rank --layers)


@dataclass(frozen=True)
class _Ranked:
    """One ``rank`` per target, and what the bench reads from them."""

    results: dict[str, Any]  # target -> RankResult
    scores: dict[str, dict[str, dict[str, float | None]]]  # target -> metric -> model -> score
    consensus: dict[str, dict[str, float | None]]  # target -> model -> consensus score
    metrics: list[str]
    seconds: float


def _checked(zoo: Any, targets: Sequence[str] | str, protocol: str, epochs: int, patience: int,
             grid: dict[str, Any] | None) -> tuple[list[str], dict[str, dict[str, list[Any]]], Any]:
    """(targets, grids, zoo), every argument checked before any work."""
    from ..zoo import load_zoo
    from ._ground_truth import check_protocol

    target_list = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    target_list = [t for t in target_list if t]
    if not target_list:
        raise TransferlabError("bench rank needs at least one target dataset (--targets T1,T2,...)")
    check_protocol(protocol)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise TransferlabError(f"epochs must be a whole number >= 1, got {epochs!r}")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise TransferlabError(f"patience must be a whole number >= 1, got {patience!r}")
    grids = _grids(protocol, grid)
    z = load_zoo(zoo) if not hasattr(zoo, "models") else zoo
    if len(z.models) < 3:
        raise TransferlabError(f"bench rank needs at least 3 models to rank; the zoo {z.name} has {len(z.models)}")
    return target_list, grids, z


def _check_options(replicates: int, lr_extend: int, layers: str) -> None:
    """The replicates, the learning rates beyond the grid and the layer mode, checked before any work."""
    from ..zoo import check_layers

    check_layers(layers)
    for name, value, least in (("replicates", replicates, 1), ("lr_extend", lr_extend, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise TransferlabError(f"{name} must be a whole number >= {least}, got {value!r}")


def _fit_options(training: bool, image_size: int | None, epochs: int, patience: int) -> dict[str, Any]:
    """The ground truth's fit options: the image size if given; epochs and patience for a training protocol."""
    options: dict[str, Any] = {}
    if image_size:
        options["image_size"] = image_size
    if training:
        options.update(epochs=epochs, patience=patience)
    return options


def _warn_fallbacks(plan: _Plan) -> None:
    """Name the models the training protocol cannot train (checked on the first target's train split)."""
    from ..data import load_dataset
    from ._ground_truth import preflight

    first = load_dataset(plan.targets[0], "train")
    for _ref, why in preflight(plan.protocol, [e.ref for e in plan.zoo.models], plan.grids, first, plan.image_size,
                               plan.trust_pickle).items():
        log.warning("%s: the %s protocol cannot train it; its linear-probe accuracy stands in as its ground truth (marked "
                    "as a fallback)", why, plan.protocol)


def _rank_targets(plan: _Plan) -> _Ranked:
    """One ``rank`` per target (features and scores cached): every metric's scores and the consensus."""
    from ..rank import rank

    scores: dict[str, dict[str, dict[str, float | None]]] = {}
    consensus: dict[str, dict[str, float | None]] = {}
    seconds = 0.0
    results = {}
    for t in plan.targets:
        t0 = time.perf_counter()
        r = rank(t, plan.zoo, plan.metrics, image_size=plan.image_size, limit=plan.limit, seed=plan.seed,
                 progress=plan.progress, trust_pickle=plan.trust_pickle, ensemble=plan.ensemble,
                 backend=plan.runner, device=plan.device, precision=plan.precision, layers=plan.layers)
        seconds += time.perf_counter() - t0
        results[t] = r
        scores[t] = {m: {ms.model: ms.scores.get(m) for ms in r.models} for m in r.metrics}
        consensus[t] = {ms.model: ms.consensus_score for ms in r.models}
    return _Ranked(results=results, scores=scores, consensus=consensus,
                   metrics=list(results[plan.targets[0]].metrics), seconds=seconds)


def _models(first: Any, z: Any) -> list[dict[str, Any]]:
    """The models in the zoo's order: reference, name and plain metadata, from the first target's ranking."""
    order = [e.ref for e in z.models]
    return [{"ref": ms.model, "name": ms.name, "metadata": {k: v for k, v in ms.metadata.items()
                                                             if isinstance(v, (int, float, str, bool))}}
            for ms in sorted(first.models, key=lambda m: order.index(m.model))]


def _quality(plan: _Plan, ranked: _Ranked, ground_truth: dict[str, dict[str, float | None]],
             priors: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, dict[str, Any]]]]:
    """(quality, baselines): every metric's and the consensus' ranking quality per target; the baselines' (random
    scores; every prior a model has a value for, the others ranked last (:func:`._priors.filled`); kNN)."""
    from ._priors import filled

    targets, n_boot, seed = plan.targets, plan.n_boot, plan.seed
    quality = {m: {t: rank_quality(ranked.scores[t][m], ground_truth[t], n_boot=n_boot, seed=seed) for t in targets}
               for m in ranked.metrics}
    quality["consensus"] = {t: rank_quality(ranked.consensus[t], ground_truth[t], n_boot=n_boot, seed=seed)
                            for t in targets}
    baselines: dict[str, dict[str, dict[str, Any]]] = {
        "random": {t: random_baseline(ground_truth[t], seed=seed) for t in targets}}
    for name, prior in priors.items():
        vals = filled(prior["values"])
        if vals is not None:
            baselines[name] = {t: rank_quality(vals, ground_truth[t], n_boot=n_boot, seed=seed) for t in targets}
    if "knn" in ranked.metrics:
        baselines["knn"] = quality["knn"]
    return quality, baselines


def _evidence(plan: _Plan, ranked: _Ranked, truth: Any, priors: dict[str, dict[str, Any]],
              models: list[dict[str, Any]]) -> dict[str, Any]:
    """Δτw of every score over the best prior, and with replicates the noise ceiling (:func:`rank_evidence`)."""
    from ._evidence import rank_evidence
    from ._priors import filled

    scores = {m: {t: ranked.scores[t][m] for t in plan.targets} for m in ranked.metrics}
    scores["consensus"] = {t: ranked.consensus[t] for t in plan.targets}
    return rank_evidence(scores, {p: filled(v["values"]) for p, v in priors.items()}, truth.accuracy,
                         truth.replicates if plan.replicates > 1 else None, [m["ref"] for m in models],
                         n_boot=plan.n_boot, seed=plan.seed)


def _grids(protocol: str, grid: dict[str, Any] | None) -> dict[str, dict[str, list[Any]]]:
    """The grid of every training protocol a ``protocol`` runs (``best``: each of BEST_OF but the probe): ``grid``
    is one protocol's grid, or ``{protocol: grid}``; values become lists; default :func:`default_grid`."""
    from ._ground_truth import BEST_OF, default_grid

    runs = [p for p in (BEST_OF if protocol == "best" else (protocol,)) if p != "linear_probe"]
    given = grid or {}
    per = given if given and all(k in runs for k in given) else {p: given for p in runs}
    out = {}
    for p in runs:
        g = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in (per.get(p) or default_grid(p)).items()}
        for k in ("lr", "head_lr_scale"):  # floats: '1' and '1.0' are one grid point (and one cache key)
            if k in g:
                g[k] = [float(v) for v in g[k]]
        if any(not v for v in g.values()):
            raise TransferlabError(f"the grid of {p} needs at least one value per key, got {per.get(p)!r}")
        out[p] = g
    return out


def _validate_ensemble(plan: _Plan, result: Any, target: str, single: dict[str, float | None]) -> dict[str, Any]:
    """Ground truth of the chosen ensemble (a probe on the members' concatenated, standardised features) next to the
    best single model, the top-K by consensus and random K-sets."""
    from ..data import load_dataset
    from ..train import probe_accuracy
    from ..zoo import resolve_model
    from ._ground_truth import feature_pair

    k, n_random, seed = plan.ensemble, plan.random_ensembles, plan.seed
    train = load_dataset(target, "train")
    if plan.limit:
        train = train.stratified_sample(plan.limit, seed=seed)
    test = load_dataset(target, "test")
    refs = [m.model for m in result.models]  # consensus order
    pairs = {r: feature_pair(resolve_model(r, trust_pickle=plan.trust_pickle), train, test, plan.fit_options)
             for r in refs}

    def acc(members: list[str]) -> float:
        f_tr = np.hstack([pairs[m][0] for m in members])
        f_te = np.hstack([pairs[m][1] for m in members])
        return probe_accuracy(f_tr, train.labels, f_te, test.labels, seed, standardize=True)

    chosen = list(result.ensemble["models"])
    rng = np.random.default_rng(seed)
    randoms = [acc(sorted(rng.choice(refs, k, replace=False).tolist())) for _ in range(n_random)]
    best_single = max((v for v in single.values() if v is not None), default=None)
    return {"k": k, "chosen": chosen, "chosen_accuracy": acc(chosen), "top_k_consensus": refs[:k],
            "top_k_consensus_accuracy": acc(refs[:k]), "best_single_accuracy": best_single,
            "best_single_model": max(single, key=lambda m: single[m] if single[m] is not None else -1.0),
            "random_mean_accuracy": float(np.mean(randoms)), "random_max_accuracy": float(np.max(randoms)),
            "random_sets": n_random}
