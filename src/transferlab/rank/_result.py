"""RankResult: per-model scores, per-metric ranks, consensus rank, timings; JSON/CSV/table writers."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_files_atomic
from .._version import __version__

#: the metrics a compact table shows first, in order: the two cross-validated baselines, then the metrics that predicted
#: fine-tuning best in ``bench rank`` (docs/benchmarks.md)
PREFERRED = ("knn", "linear_probe", "gbc", "sfda", "logme", "hscore_shrinkage", "leep", "nce")


#: scores that are accuracies (cross-validated on the frozen features): a baseline winning them is news
PROBE_SCORES = ("linear_probe", "knn")

@dataclass
class ModelScores:
    model: str
    name: str
    scores: dict[str, float | None]
    ranks: dict[str, int | None]
    consensus_rank: int
    consensus_score: float | None
    metadata: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # metric -> why it could not be computed for this model


@dataclass
class RankResult:
    dataset: dict[str, Any]
    zoo: str
    metrics: list[str]
    models: list[ModelScores]  # sorted by consensus rank
    timings: dict[str, float]
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ensemble: dict[str, Any] | None = None  # rank(..., ensemble=K): the chosen set and why
    #: where the features came from: state (cold, warm, partly warm, off), how many models' features and scores the
    #: cache gave, and ``cold``: what computing them cost, as recorded when they were computed (rank/_api.py)
    cache: dict[str, Any] = field(default_factory=dict)
    #: rank_adaptive: the rounds (models, consensus, P(below the leader), dropped and why, forward passes) and the
    #: forward passes against a full ranking's (rank/_adaptive_rank.py); None for a full ranking
    adaptive: dict[str, Any] | None = None

    def best(self) -> ModelScores:
        return self.models[0]

    def recommendation(self) -> str:
        """One sentence: the recommended model and why (its consensus, its margin over the runner-up and over the
        best baseline, the metrics that put it first)."""
        best = self.models[0]
        kind = " (a baseline: no pretrained model beats it)" if best.metadata.get("baseline") else ""
        return f"Recommended: {best.name}{kind}: {self.recommendation_why()}"

    def recommendation_why(self) -> str:
        best = self.models[0]
        if best.consensus_score is None:
            return "no metric could score it"
        scored = [k for k in self.metrics if best.scores.get(k) is not None]
        firsts = [k for k in scored if best.ranks.get(k) == 1]
        why = [f"consensus {best.consensus_score:.2f} over {len(scored)} metric{'s' if len(scored) != 1 else ''}"]
        rest = [m for m in self.models[1:] if m.consensus_score is not None]
        if rest:
            why.append(f"{best.consensus_score - rest[0].consensus_score:+.2f} over the runner-up {rest[0].name}")
        base = next((m for m in rest if m.metadata.get("baseline")), None)
        if base is not None and not best.metadata.get("baseline"):
            why.append(f"{best.consensus_score - base.consensus_score:+.2f} over the best baseline {base.name}")
        if firsts:
            why.append(f"first by {len(firsts)} of {len(scored)} ({', '.join(firsts[:4])}"
                       f"{', ...' if len(firsts) > 4 else ''})")
        probe_note = self._baseline_wins_the_probes()
        if probe_note:
            why.append(probe_note)
        return "; ".join(why)

    def _baseline_wins_the_probes(self) -> str | None:
        """When a baseline (raw inputs, a random network) beats the recommended model on the scores that measure
        accuracy directly (linear probe, kNN): the consensus ranks it lower, the user must hear it."""
        best = self.models[0]
        if best.metadata.get("baseline"):
            return None
        wins = []
        for k in PROBE_SCORES:
            if k not in self.metrics or best.scores.get(k) is None:
                continue
            top = max((m for m in self.models if m.scores.get(k) is not None), key=lambda m: m.scores[k])
            if top.metadata.get("baseline") and top.scores[k] > best.scores[k]:
                wins.append((k, top, best.scores[k]))
        if not wins:
            return None
        said = ", ".join(f"{k} {top.scores[k]:.3f} for {top.name} against {mine:.3f}" for k, top, mine in wins)
        return (f"but a baseline scores higher on the accuracy-type scores ({said}): on this data the pretrained "
                "features may add little over raw inputs; compare them after fine-tuning")

    def preferred_metrics(self, k: int) -> list[str]:
        """The ``k`` metrics a compact table shows: :data:`PREFERRED` first, then the others in their order."""
        return ([m for m in PREFERRED if m in self.metrics] + [m for m in self.metrics if m not in PREFERRED])[:k]

    def expected_accuracy(self) -> dict[str, Any] | None:
        """What the recommended model should reach on this data, when the ranking has a linear probe: its
        cross-validated accuracy on the frozen features with a 95 % Wilson interval over the examples scored (every
        example is predicted once, out of fold). Fine-tuning usually reaches at least as much."""
        acc = self.models[0].scores.get("linear_probe")
        n = int(self.models[0].timings.get("examples") or self.dataset.get("size") or 0)  # adaptive: those it saw
        if acc is None or n < 1:
            return None
        low, high = wilson_interval(int(round(acc * n)), n)
        return {"metric": "linear_probe", "accuracy": float(acc), "low": low, "high": high, "n": n}

    def expectation(self) -> str | None:
        """One sentence on :meth:`expected_accuracy`, or None without a probe."""
        e = self.expected_accuracy()
        if e is None:
            return None
        return (f"Expected accuracy: a linear probe on {self.models[0].name}'s frozen features reaches "
                f"{e['accuracy']:.3f} in cross-validation (95 % interval {e['low']:.3f}-{e['high']:.3f} over "
                f"{e['n']:,} examples); fine-tuning usually reaches at least as much.")

    def timing_summary(self) -> str:
        """One sentence on what this run took; on a warm run (features from the cache), that it was warm and what
        the cold run cost, as recorded when the features and scores were computed: a rerun never passes its cache
        reads off as the cost of ranking."""
        t, c = self.timings, self.cache
        now = (f"total {t['total_seconds']:.1f} s (forward passes {t['forward_seconds']:.1f} s, metrics "
               f"{t['metrics_seconds']:.1f} s)")
        state = c.get("state")
        if state not in ("warm", "partly warm"):
            return now + (" (cold: every model's features computed in this run)" if state == "cold" else "")
        cold = c.get("cold") or {}
        missing = cold.get("not_recorded") or []
        which = (f"all {c['models']} models" if state == "warm"
                 else f"{c['features_from_cache']} of {c['models']} models")
        out = f"{now}: warm, the features of {which} came from the cache, so this is not what ranking costs; "
        if len(missing) >= c["models"]:
            return out + "the cold run's timings were not recorded (cached by an earlier transferlab version)"
        when = f", from {str(cold['recorded_at'])[:10]}" if cold.get("recorded_at") else ""
        out += (f"cold (when they were computed{when}): {cold['seconds']:.1f} s, forward passes "
                f"{cold['forward_seconds']:.1f} s, metrics {cold['metrics_seconds']:.1f} s")
        return out + (f" (not recorded for {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}: cached "
                      "by an earlier version or by a resumed run)" if missing else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "transferlab_version": __version__,
            "dataset": self.dataset,
            "zoo": self.zoo,
            "metrics": list(self.metrics),
            "models": [asdict(m) for m in self.models],
            "timings": dict(self.timings),
            "options": dict(self.options),
            "notes": list(self.notes),
            "recommendation": self.recommendation(),
            "recommendation_why": self.recommendation_why(),
            "expected_accuracy": self.expected_accuracy(),
            "preferred_metrics": self.preferred_metrics(len(self.metrics)),  # the order compact tables show them
            "ensemble": self.ensemble,
            "cache": dict(self.cache),
            "timing_summary": self.timing_summary() if self.timings else None,
            "adaptive": self.adaptive,
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["consensus_rank", "model", "name", "consensus_score", *self.metrics,
                    *(f"rank_{m}" for m in self.metrics), "extract_seconds", "cache_hit"])
        for m in self.models:
            w.writerow([m.consensus_rank, m.model, m.name, _fmt(m.consensus_score),
                        *(_fmt(m.scores.get(k)) for k in self.metrics),
                        *("" if m.ranks.get(k) is None else m.ranks[k] for k in self.metrics),
                        _fmt(m.timings.get("extract_seconds")), m.timings.get("cache_hit")])
        return buf.getvalue()

    def save(self, out_dir: str | Path, *, html: bool = True) -> dict[str, Path]:
        """Write ranking.json, ranking.csv and (by default) report.html into ``out_dir``, together or not at all
        (everything is rendered first, then written to temporary files, then renamed); returns the paths."""
        from .._io import json_text

        files = {"ranking.json": json_text(self.to_dict()) + "\n",
                 "ranking.csv": self.to_csv()}
        if html:
            from ..report import rank_report_html

            files["report.html"] = rank_report_html(self.to_dict())
        written = write_files_atomic(out_dir, files)
        return {"json": written["ranking.json"], "csv": written["ranking.csv"],
                **({"html": written["report.html"]} if html else {})}


#: the standard normal's 97.5 % quantile (scipy.special.ndtri(0.975)): a 95 % two-sided interval
_Z95 = 1.959963984540054


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of ``k`` successes in ``n`` trials (Newcombe 1998, without continuity
    correction; scipy's ``binomtest(k, n).proportion_ci(0.95, method="wilson")``, without importing scipy.stats,
    which alone took a third of a warm rerun)."""
    p, z2 = k / n, _Z95 ** 2
    denom = 2 * (n + z2)
    center = (2 * n * p + z2) / denom
    delta = _Z95 / denom * math.sqrt(4 * n * p * (1 - p) + z2)
    return (0.0 if k == 0 else center - delta), (1.0 if k == n else center + delta)


def _fmt(v: Any) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
