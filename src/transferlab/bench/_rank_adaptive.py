"""``bench rank-adaptive``: does the adaptive ranking pick what the full ranking picks, at a fraction of its forward
passes?

Per target, the full ranking (``rank``: every model on every example); per (target, seed), the adaptive ranking
(``rank_adaptive``: the seed orders the examples and draws the half-samples). Each row compares the two: the same
top-1, the same top-3 set, and the forward passes (examples x models, counted) and forward-pass seconds (each
model's examples priced at its seconds per example in the full ranking, as the feature cache recorded them when the
features were computed, so a warm rerun reports the cold figures) of the adaptive ranking as a share of the full
one's. Goals (issue 30): the same top-1 and top-3 set in >= 90 % of targets x
seeds, at <= 30 % of the forward passes. Every run is a job of the bench harness, cached in ``out/runs``: a bench
resumes run by run (and the features are in the feature cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import TransferlabError
from ._harness import Job, backend_of, fmt, run_jobs
from ._result import DeclaredResult

TARGETS = ("builtin:fashion-mnist", "builtin:digits", "builtin:shapes", "builtin:textures")
FORMAT = 2  # of the cached adaptive runs: raise it when their record changes
FULL_FORMAT = 3  # of the cached full runs (3: each model's forward-pass seconds)
GOAL_AGREEMENT, GOAL_SHARE = 0.9, 0.3


@dataclass
class AdaptiveBenchResult(DeclaredResult):
    zoo: str
    targets: list[str]
    seeds: list[int]
    confidence: float
    full: list[dict[str, Any]]  # one full ranking per target (per target and seed with a limit)
    adaptive: list[dict[str, Any]]  # one adaptive ranking per (target, seed)
    options: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Per (target, seed): both top-1s and top-3 sets, whether they agree, the forward passes and their share."""
        out = []
        for a in self.adaptive:
            f = next(x for x in self.full if x["target"] == a["target"] and x["seed"] in (a["seed"], None))
            share_s = _seconds_share(a, f)
            out.append({"target": a["target"], "seed": a["seed"], "top1_full": f["names"][0],
                        "top1_adaptive": a["names"][0], "same_top1": a["order"][0] == f["order"][0],
                        "top3_full": ", ".join(f["names"][:3]), "top3_adaptive": ", ".join(a["names"][:3]),
                        "same_top3": set(a["order"][:3]) == set(f["order"][:3]),
                        "top1_kept": f["order"][0] in a["survivors_refs"],
                        "same_top1_own": a["survivors_by_own_consensus"][0] == f["order"][0],
                        "forward_passes": a["forward_passes"], "forward_passes_full": f["forward_passes"],
                        "share": a["forward_passes"] / f["forward_passes"], "share_seconds": share_s,
                        "rounds": len(a["rounds"]), "survivors": len(a["survivors"]),
                        "examples": a["rounds"][-1]["examples"], "n": f["examples"],
                        "seconds": a["seconds"], "full_seconds": f["seconds"],
                        "resampling_seconds": a["resampling_seconds"]})
        return out

    def summary(self) -> dict[str, Any]:
        """Agreement over targets x seeds, the forward passes over all of them, and the rows that miss a goal."""
        rows = self.rows()
        top1 = float(np.mean([r["same_top1"] for r in rows])) if rows else None
        top3 = float(np.mean([r["same_top3"] for r in rows])) if rows else None
        share = sum(r["forward_passes"] for r in rows) / max(1, sum(r["forward_passes_full"] for r in rows))
        secs = [r["share_seconds"] for r in rows]
        kept = float(np.mean([r["top1_kept"] for r in rows])) if rows else None
        own = float(np.mean([r["same_top1_own"] for r in rows])) if rows else None
        return {"runs": len(rows), "top1_agreement": top1, "top3_agreement": top3, "share": share,
                "top1_kept": kept, "top1_agreement_own_consensus": own,
                "share_max": max((r["share"] for r in rows), default=None),
                "share_seconds": float(np.mean(secs)) if secs and None not in secs else None,
                "met": {"top1": top1 is not None and top1 >= GOAL_AGREEMENT,
                        "top3": top3 is not None and top3 >= GOAL_AGREEMENT, "share": share <= GOAL_SHARE},
                "misses": [f"{_short(r['target'])} seed {r['seed']}: " + "; ".join(w for w in (
                    "" if r["same_top1"] else f"top-1 {r['top1_adaptive']} (full: {r['top1_full']})",
                    "" if r["same_top3"] else f"top-3 {r['top3_adaptive']} (full: {r['top3_full']})",
                    "" if r["share"] <= GOAL_SHARE else f"{100 * r['share']:.0f} % of the forward passes") if w)
                    for r in rows if not (r["same_top1"] and r["same_top3"] and r["share"] <= GOAL_SHARE)]}

    def _data(self) -> dict[str, Any]:
        return {"transferlab_version": __version__, "zoo": self.zoo, "targets": self.targets, "seeds": self.seeds,
                "confidence": self.confidence, "rows": self.rows(), "summary": self.summary(), "full": self.full,
                "adaptive": self.adaptive, "options": self.options}

    json_name = "bench_rank_adaptive.json"
    report = "rank_adaptive_bench_html"

    @staticmethod
    def tables_from(d: dict[str, Any]) -> list[Any]:
        return adaptive_tables(d)


def _seconds_share(a: dict[str, Any], f: dict[str, Any]) -> float | None:
    """The adaptive ranking's share of the full ranking's forward-pass seconds, every model's examples priced at its
    seconds per example in the full ranking (one run's costs: the two rankings ran at other times on a shared
    machine). A model's examples: those of the last round it took part in (pixels' PCA, refitted each round, is
    counted once: it costs next to nothing). None without the full ranking's per-model seconds."""
    cost = f.get("model_forward_seconds")
    if not cost or None in cost.values():
        return None
    ref = dict(zip(f["names"], f["order"], strict=True))
    examples = {ref[n]: a["rounds"][-1]["examples"] for n in a["survivors"]}
    for r in a["rounds"]:
        examples.update({ref[n]: r["examples"] for n in r["dropped"]})
    total = sum(cost.values())
    return sum(examples.get(m, 0) / f["examples"] * c for m, c in cost.items()) / total if total else None


def _short(t: str) -> str:
    return t.removeprefix("builtin:")


def bench_rank_adaptive(
    zoo: str = "builtin:vision",
    targets: Sequence[str] = TARGETS,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    confidence: float = 0.95,
    metrics: str | None = None,
    limit: int | None = None,
    image_size: int | None = None,
    out: str | Path = "runs/bench-rank-adaptive",
    progress: bool = False,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    device: str | None = None,
    precision: str | None = None,
) -> AdaptiveBenchResult:
    """The full and the adaptive ranking of ``zoo`` on every target (the full one per target, per seed too with a
    ``limit``, whose sample the seed draws; the adaptive one per seed), compared. ``backend``, ``address``,
    ``cpus_per_run``, ``gpus_per_run``, ``device``, ``precision``: where each ranking runs, as every bench."""
    from ..rank import adaptive_settings

    adaptive_settings(confidence)  # a bad confidence fails before any work
    if not seeds or not targets:
        raise TransferlabError("bench rank-adaptive needs at least one target and one seed")
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)
    common = {"zoo": zoo, "metrics": metrics, "limit": limit, "image_size": image_size}
    full_seeds = list(seeds) if limit else [None]
    jobs = [Job(f"{_short(t)} full" + (f" seed {s}" if s is not None else ""), full_run,
                {"target": t, "seed": s, **common}) for t in targets for s in full_seeds]
    jobs += [Job(f"{_short(t)} adaptive seed {s}", adaptive_run, {"target": t, "seed": s, "confidence": confidence,
                                                                    **common}) for t in targets for s in seeds]
    n_full = len(targets) * len(full_seeds)
    runs = [r for group, version in ((jobs[:n_full], FULL_FORMAT), (jobs[n_full:], FORMAT))
            for r in run_jobs(group, bench="rank-adaptive", version=version, cache=Path(out) / "runs",
                              progress=progress, backend=runner, device=device, precision=precision,
                              figure=lambda r: f"{fmt(r['forward_passes'])} forward passes, top-1 {r['names'][0]}")]
    return AdaptiveBenchResult(zoo=zoo, targets=list(targets), seeds=list(seeds), confidence=confidence,
                               full=runs[:n_full], adaptive=runs[n_full:],
                               options={**common, "backend": runner.name})


def _record(r: Any, target: str, seed: int | None, seconds: float) -> dict[str, Any]:
    """What the bench keeps of one ranking: the order (references and names), the examples, the seconds, the
    forward-pass seconds as the cache recorded them when the features were computed."""
    return {"target": target, "seed": seed, "order": [m.model for m in r.models], "names": [m.name for m in r.models],
            "examples": int(r.dataset["size"]), "seconds": seconds,
            "cold_forward_seconds": (r.cache.get("cold") or {}).get("forward_seconds")
            if (r.cache.get("cold") or {}).get("complete") else None}


def full_run(target: str, seed: int | None, zoo: str, metrics: str | None, limit: int | None,
             image_size: int | None) -> dict[str, Any]:
    """The full ranking of ``zoo`` on ``target`` (a job of the harness): every model on every example."""
    import time

    from ..rank import rank

    t0 = time.perf_counter()
    r = rank(target, zoo, metrics, limit=limit, image_size=image_size, seed=seed or 0)
    rec = _record(r, target, seed, time.perf_counter() - t0)
    return {**rec, "forward_passes": rec["examples"] * len(r.models),
            "model_forward_seconds": {m.model: (m.timings.get("cold") or {}).get("forward_seconds")
                                      for m in r.models}}


def adaptive_run(target: str, seed: int, confidence: float, zoo: str, metrics: str | None, limit: int | None,
                 image_size: int | None) -> dict[str, Any]:
    """The adaptive ranking of ``zoo`` on ``target`` with ``seed`` (a job of the harness): its order, its forward
    passes and, per round, the examples, the models and those dropped."""
    import time

    from ..rank import rank_adaptive

    t0 = time.perf_counter()
    r = rank_adaptive(target, zoo, metrics, confidence=confidence, limit=limit, image_size=image_size, seed=seed)
    a = r.adaptive or {}
    last = a["rounds"][-1]["consensus"]  # the survivors' consensus among themselves (the last round's)
    ref = {m.name: m.model for m in r.models}
    return {**_record(r, target, seed, time.perf_counter() - t0), "forward_passes": a["forward_passes"],
            "forward_passes_full": a["forward_passes_full"], "survivors": a["survivors"],
            "survivors_refs": [ref[n] for n in a["survivors"]],
            "survivors_by_own_consensus": [ref[n] for n in sorted(a["survivors"], key=lambda n: -(last[n] or 0.0))],
            "resampling_seconds": r.timings.get("resampling_seconds"),
            "rounds": [{"examples": x["examples"], "models": len(x["models"]), "leader": x["leader"],
                        "dropped": sorted(x["dropped"]), "resamples": x["resamples"],
                        "forward_passes": x["forward_passes"]} for x in a["rounds"]]}


def adaptive_tables(d: dict[str, Any]) -> list[Any]:
    """The bench's declared tables: every (target, seed), then the summary against the goals."""
    from ..report import Column, Table

    cols = [Column("target", "target"), Column("seed", "seed", "count"), Column("top1_full", "top-1 (full)"),
            Column("top1_adaptive", "top-1 (adaptive)"), Column("same_top1", "same top-1"),
            Column("same_top3", "same top-3 set"), Column("top1_kept", "full top-1 kept"),
            Column("rounds", "rounds", "count"),
            Column("examples", "examples, last round", "count"), Column("survivors", "left", "count"),
            Column("share", "forward passes", "percent"), Column("share_seconds", "forward seconds", "percent"),
            Column("seconds", "adaptive s", "seconds"), Column("resampling_seconds", "of which resampling s",
                                                               "seconds")]
    rows = [{**r, "target": _short(r["target"]), "same_top1": "yes" if r["same_top1"] else "NO",
             "same_top3": "yes" if r["same_top3"] else "NO", "top1_kept": "yes" if r["top1_kept"] else "NO"}
            for r in d["rows"]]
    per_run = Table(f"Adaptive against full ranking: {d['zoo']}, confidence {d['confidence']:g}", cols, rows,
                    notes=["forward passes: examples run through each model, summed, as a share of the full "
                           "ranking's (every model on every example); forward seconds: the share of the full "
                           "ranking's forward-pass seconds, each model's examples priced at its seconds per example "
                           "in the full ranking (the adaptive EfficientNets cost 10-100x a small model's); "
                           "adaptive s: the adaptive ranking's wall time in this run (a warm run reads the cache)."],
                    name="runs")
    s = d["summary"]
    verdict = {True: "met", False: "NOT met"}
    summary = Table("Goals (issue 30): the same top-1 and top-3 set in >= 90 % of targets x seeds, at <= 30 % of the "
                    "forward passes", [Column("what", "what"), Column("goal", "goal"),
                                       Column("value", "measured", "percent"), Column("verdict", "verdict")],
                    [{"what": "same top-1", "goal": ">= 90 %", "value": s["top1_agreement"],
                      "verdict": verdict[s["met"]["top1"]]},
                     {"what": "same top-3 set", "goal": ">= 90 %", "value": s["top3_agreement"],
                      "verdict": verdict[s["met"]["top3"]]},
                     {"what": "forward passes (all runs)", "goal": "<= 30 %", "value": s["share"],
                      "verdict": verdict[s["met"]["share"]]},
                     {"what": "forward-pass seconds (mean)", "goal": "", "value": s["share_seconds"], "verdict": ""},
                     {"what": "full top-1 among the survivors", "goal": "", "value": s["top1_kept"], "verdict": ""},
                     {"what": "same top-1, survivors by their own consensus", "goal": "",
                      "value": s["top1_agreement_own_consensus"], "verdict": ""}],
                    notes=["full top-1 among the survivors: runs whose adaptive ranking never dropped the full "
                           "ranking's first; survivors by their own consensus: the same top-1 had the survivors been "
                           "ordered by their consensus among themselves (the last round's; its ties as the zoo's consensus "
                           "orders them) instead of the zoo's."],
                    verdicts=[f"misses: {m}" for m in s["misses"]] or ["every run met every goal"], name="summary")
    return [per_run, summary]
