"""``bench domain``: every domain adaptation method on built-in (or given) shifts over seeds and trade-offs, with the
bounds (source only, target-supervised), and every label-free selector judged against the oracle: the target
accuracy of its pick among all checkpoints of a shift (methods x trade-offs x epochs), its regret, and Spearman's ρ
between its score and the target accuracy over those checkpoints.

Every run is a job of the bench harness (:mod:`._harness`), cached in ``out/runs/<key>.json`` (key: every argument of
the run), so a bench resumes run by run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import TransferlabError
from ._harness import Job, backend_of, check_option_names, fmt, run_jobs
from ._result import DeclaredResult
from ._tables import domain_tables

SHIFTS = (("builtin:digits", "builtin:digits-m"), ("builtin:shapes", "builtin:shapes-sketch"))
TRADE_OFFS = (0.1, 0.3, 1.0, 3.0)
DEFAULT_TRADE_OFF = 1.0
FORMAT = 3  # of the cached runs: raise it when a run's record changes (2: guarded, the default selector; 3: source_only
# trains with label smoothing 0.1 by default)


def _name(shift: tuple[str, str]) -> str:
    return f"{shift[0].removeprefix('builtin:')}→{shift[1].removeprefix('builtin:')}"


@dataclass
class DomainBenchResult(DeclaredResult):
    model: str
    shifts: list[tuple[str, str]]
    methods: list[str]
    seeds: list[int]
    trade_offs: list[float]
    runs: list[dict[str, Any]]  # one per (shift, method, seed, trade-off): history (scores, oracle per epoch), picks
    bounds: dict[str, dict[str, Any]]  # shift name -> {"target_supervised": [...per seed]}
    options: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> dict[str, dict[str, dict[str, Any]]]:
        """shift -> method -> target accuracy (mean, sd over seeds) at the default trade-off: of the checkpoint the
        default selector kept, and of the oracle-best epoch."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for shift in map(_name, self.shifts):
            out[shift] = {}
            for m in self.methods:
                rs = [r for r in self.runs if r["shift"] == shift and r["method"] == m
                      and (m == "source_only" or r["trade_off"] == self._default_trade_off())]
                kept = [r["kept_accuracy"] for r in rs if r.get("kept_accuracy") is not None]
                best = [r["oracle_best"] for r in rs if r.get("oracle_best") is not None]
                out[shift][m] = {"kept_mean": _mean(kept), "kept_sd": _sd(kept), "oracle_best_mean": _mean(best),
                                 "oracle_best_sd": _sd(best), "n": len(rs)}
        return out

    def _default_trade_off(self) -> float:
        return DEFAULT_TRADE_OFF if DEFAULT_TRADE_OFF in self.trade_offs else self.trade_offs[0]

    def selectors(self) -> dict[str, dict[str, dict[str, Any]]]:
        """shift -> selector -> over seeds: the target accuracy of its pick among every checkpoint of the shift
        (methods x trade-offs x epochs), the regret against the oracle's pick, Spearman's ρ of score and accuracy."""
        from scipy.stats import spearmanr

        out: dict[str, dict[str, dict[str, Any]]] = {}
        names = sorted({k for r in self.runs for k in r["picks"]})
        for shift in map(_name, self.shifts):
            out[shift] = {}
            for s in names:
                key = "val_accuracy" if s == "source_val" else s
                if s == "guarded":
                    out[shift][s] = self._guarded(shift)
                    continue
                acc, regret, rho = [], [], []
                for seed in self.seeds:
                    pts = [(row[key], row["oracle_accuracy"]) for r in self.runs
                           if r["shift"] == shift and r["seed"] == seed for row in r["history"]
                           if row.get(key) is not None and np.isfinite(row[key])
                           and row.get("oracle_accuracy") is not None]
                    if len(pts) < 2:
                        continue
                    score, oracle = np.array(pts).T
                    pick = oracle[int(np.argmax(score))]
                    acc.append(float(pick))
                    regret.append(float(oracle.max() - pick))
                    if np.ptp(score) > 0 and np.ptp(oracle) > 0:  # a constant side has no rank correlation
                        rho.append(float(spearmanr(score, oracle).statistic))
                out[shift][s] = {"pick_accuracy": _mean(acc), "regret": _mean(regret), "regret_sd": _sd(regret),
                                 "spearman": _mean(rho), "seeds": len(acc)}
        return out

    def _guarded(self, shift: str) -> dict[str, Any]:
        """``guarded`` across a seed's checkpoints: the reference is the seed's ``source_only`` run at its
        ``source_val`` pick; see :func:`guarded_pick`."""
        picks = [guarded_pick([r for r in self.runs if r["shift"] == shift and r["seed"] == seed])
                 for seed in self.seeds]
        picks = [p for p in picks if p is not None]
        acc, regret = [p["accuracy"] for p in picks], [p["regret"] for p in picks]
        below = [p["accuracy"] - p["source_only"] for p in picks]
        return {"pick_accuracy": _mean(acc), "regret": _mean(regret), "regret_sd": _sd(regret), "spearman": None,
                "seeds": len(picks), "fell_back": sum(p["fell_back"] for p in picks),
                "vs_source_only": _mean(below)}

    def _data(self) -> dict[str, Any]:
        return {"transferlab_version": __version__, "model": self.model,
                "shifts": [list(s) for s in self.shifts], "methods": self.methods, "seeds": self.seeds,
                "trade_offs": self.trade_offs, "default_trade_off": self._default_trade_off(), "cells": self.cells(),
                "selectors": self.selectors(), "bounds": self.bounds, "runs": self.runs, "options": self.options}

    json_name = "bench_domain.json"
    report = "domain_bench_html"
    tables_from = staticmethod(domain_tables)


# as the guarded selector's defaults (domain/_selectors.py)
GUARD_TOLERANCE, GUARD_MIN_BALANCE, GUARD_ORDER = 0.02, 0.5, "score"


def guarded_pick(runs: list[dict[str, Any]], tolerance: float = GUARD_TOLERANCE,
                 min_balance: float = GUARD_MIN_BALANCE, order: str = GUARD_ORDER) -> dict[str, Any] | None:
    """The guarded pick among every checkpoint of one seed's runs: the best ``transfer_score`` among checkpoints whose
    source hold-out accuracy is at least the ``source_only`` run's (at its ``source_val`` pick) minus ``tolerance``
    and whose target balance is at least ``min_balance`` (``order="source_first"``: the most source-accurate of them,
    ``transfer_score`` breaking ties); none: the ``source_only`` checkpoint (fell back). None when the seed has no
    ``source_only`` run or no oracle."""
    ref = next((r["picks"].get("source_val") for r in runs if r["method"] == "source_only"), None)
    rows = [row for r in runs for row in r["history"] if row.get("oracle_accuracy") is not None]
    if not ref or ref.get("oracle_accuracy") is None or not rows:
        return None
    first = (lambda row: (row["val_accuracy"],)) if order == "source_first" else (lambda row: ())
    cands = [(*first(row), row["transfer_score"], -row["epoch"], row["oracle_accuracy"]) for row in rows
             if np.isfinite(row.get("transfer_score", np.nan)) and row.get("val_accuracy") is not None
             and row["val_accuracy"] >= ref["score"] - tolerance and row.get("guarded.balance", 1.0) >= min_balance]
    acc = max(cands)[-1] if cands else ref["oracle_accuracy"]
    best = max(row["oracle_accuracy"] for row in rows)
    return {"accuracy": acc, "regret": best - acc, "fell_back": not cands, "source_only": ref["oracle_accuracy"]}


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def _sd(v: list[float]) -> float | None:
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def domain_run(shift: tuple[str, str], method: str, seed: int, trade_off: float, model: str,
               options: dict[str, Any], limit: int | None, test_limit: int | None,
               source_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One adaptation run (a job of the harness: plain arguments, its record). ``source_options``: a source-free
    method's run trains its source model first (``source_only`` with these options, kept by ``source_val``: the
    seed's source_only job's model), then adapts it on the target alone."""
    import tempfile

    from ..data import load_dataset
    from ..domain import adapt

    src, tgt, test = _data(tuple(shift), limit, test_limit, load_dataset)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-domain-source-") as tmp:
        if source_options is None:
            r = adapt(src, tgt, model, method, trade_off=trade_off, target_test=test, seed=seed, **options)
        else:
            adapt(src, tgt, model, "source_only", target_test=test, seed=seed, select="source_val",
                  out=f"{tmp}/source", **source_options)
            r = adapt(None, tgt, method=method, source_model=f"{tmp}/source", target_test=test, seed=seed, **options)
    m = r.metrics
    return {"shift": _name(shift), "method": method, "seed": seed, "trade_off": trade_off,
            "kept_accuracy": m["target_accuracy_oracle"], "oracle_best": m["oracle_best_epoch_accuracy"],
            "source_model_accuracy": m.get("source_model_accuracy_oracle"),
            "picks": m["picks"], "history": m["history"], "seconds": time.perf_counter() - t0}


def bench_domain(
    model: str,
    *,
    out: str | Path,
    shifts: Sequence[tuple[str, str]] | None = None,
    methods: Sequence[str] | str | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    trade_offs: Sequence[float] = TRADE_OFFS,
    epochs: int = 10,
    lr: float | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    supervised: bool = True,
    method_options: dict[str, dict[str, Any]] | None = None,
    device: str | None = None,
    precision: str | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    progress: bool = False,
) -> DomainBenchResult:
    """Every method (default: all) on every shift (default: digits → digits-m, shapes → shapes-sketch) for every seed
    and trade-off (source_only once per seed), ``epochs`` each; ``limit``/``test_limit``: samples of the training
    splits (source: class-stratified; target: random, its labels unread) and of the target's test split (stratified:
    it is only for the oracle). ``supervised``: also fine-tune on the labelled target (the upper bound).
    ``method_options``: ``{method: {option: value}}`` (e.g. ``{"dann": {"hidden": 256}}``). ``backend``:
    ``local`` (one run after the other, here) or ``ray`` (each run a Ray task of ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs on the cluster at ``address``, default ``$RAY_ADDRESS``, else a local Ray);
    ``device`` and ``precision``: where and how each run computes, on the machine it runs on."""
    from ..domain import DEFAULT_LR, SOURCE_FREE_LR, list_methods

    if not list(seeds):  # an empty --seeds '' would start work and end with no row
        raise TransferlabError("bench domain needs at least one seed (--seeds 0,1,2)")
    from ..domain import METHODS

    all_methods = list_methods()
    ms = ([m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else list(methods or
                                                                                                     all_methods))
    unknown = [m for m in ms if m not in all_methods]
    if unknown:
        raise TransferlabError(f"unknown domain adaptation method(s) {', '.join(unknown)}; known: "
                               f"{', '.join(all_methods)}")
    check_option_names(method_options or {}, all_methods, "domain adaptation method")
    if not trade_offs or any(not t > 0 for t in trade_offs):
        raise TransferlabError(f"trade-offs must be > 0, got {list(trade_offs)}")
    shift_list = [tuple(s) for s in (shifts or SHIFTS)]
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)
    out_dir = Path(out)
    options = {"epochs": epochs, "batch_size": batch_size, "lr": lr if lr is not None else DEFAULT_LR,
               **({"image_size": image_size} if image_size else {})}  # the effective lr keys the run cache
    per_method = dict(method_options or {})
    free = {m for m in ms if METHODS.meta(m).get("source_free")}  # from the seed's source model, on the target alone
    plan = [(s, m, seed, t) for s in shift_list for seed in seeds for m in ms
            for t in ((DEFAULT_TRADE_OFF,) if m == "source_only" or m in free else trade_offs)]
    source_options = {**options, **per_method.get("source_only", {})}
    free_options = {**options, "lr": lr if lr is not None else SOURCE_FREE_LR}
    jobs = [Job(f"{_name(s)} {m} seed {seed} λ {t:g}", domain_run,
                {"shift": list(s), "method": m, "seed": seed, "trade_off": t, "model": model,
                 "options": {**(free_options if m in free else options), **per_method.get(m, {})},
                 "limit": limit, "test_limit": test_limit,
                 **({"source_options": source_options} if m in free else {})})
            for s, m, seed, t in plan]
    if supervised:
        jobs += [Job(f"{_name(s)} target-supervised seed {seed}", supervised_run,
                     {"shift": list(s), "model": model, "seed": seed, "epochs": epochs, "image_size": image_size,
                      "batch_size": batch_size, "limit": limit, "test_limit": test_limit})
                 for s in shift_list for seed in seeds]
    records = run_jobs(jobs, bench="domain", version=FORMAT, cache=out_dir / "runs", progress=progress,
                       backend=runner, device=device, precision=precision,
                       figure=lambda r: f"target accuracy {fmt(r.get('kept_accuracy', r.get('test_accuracy')))}")
    runs = records[:len(plan)]
    bounds = {_name(s): {"target_supervised": [r["test_accuracy"] for r in records[len(plan):]
                                               if r["shift"] == _name(s)]} for s in shift_list} if supervised else {}
    return DomainBenchResult(model, shift_list, ms, list(seeds), [float(t) for t in trade_offs], runs, bounds,
                             {"epochs": epochs, "lr": options["lr"], "limit": limit, "test_limit": test_limit, "image_size": image_size,
                              "batch_size": batch_size, "method_options": per_method})


def _data(shift: tuple[str, str], limit: int | None, test_limit: int | None, load: Any) -> tuple[Any, Any, Any]:
    src, tgt, test = load(shift[0], "train"), load(shift[1], "train"), load(shift[1], "test")
    if limit:
        src = src.stratified_sample(limit, seed=0)
        if limit < len(tgt):  # not stratified: that would read the target's labels
            tgt = tgt.subset(np.sort(np.random.default_rng(0).choice(len(tgt), limit, replace=False)))
    if test_limit:
        test = test.stratified_sample(test_limit, seed=0)
    return src, tgt, test


def supervised_run(shift: tuple[str, str], model: str, seed: int, epochs: int, image_size: int | None,
                   batch_size: int, limit: int | None, test_limit: int | None) -> dict[str, Any]:
    """The target-supervised bound (a job of the harness): ``finetune`` on the labelled target training sample,
    accuracy on its test split."""
    from ..data import load_dataset
    from ..fit import fit

    _, tgt, test = _data(tuple(shift), limit, test_limit, load_dataset)
    r = fit(tgt, model, "finetune", test=test, epochs=epochs, image_size=image_size, batch_size=batch_size,
            seed=seed)
    return {"shift": _name(shift), "seed": seed, "test_accuracy": float(r.metrics["test_accuracy"])}
