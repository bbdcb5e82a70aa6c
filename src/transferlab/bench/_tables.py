"""Every bench result's tables, declared once (:class:`transferlab.report.Table`), and its verdicts, computed on the
result: the HTML report, ``benchmarks/bench_*_tables.py`` (Markdown) and ``transferlab bench`` (the console) render
these. Each function reads a result's ``to_dict()`` data, so it also turns an older bench JSON into the tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._published import merge_published
from ..report import Column, Table, interval
from ._priors import PRIORS
from ._rank_evidence_tables import evidence_tables, prior_verdict


def _short(t: str) -> str:
    return t.removeprefix("builtin:")


def _mean_or(v: float | None, default: float = -np.inf) -> float:
    return default if v is None else v


# -- bench rank ----------------------------------------------------------------------------------------------------

#: metrics that are cross-validated probes, not transferability estimates: they count as baselines
PROBES = frozenset({"knn", "linear_probe"})


def _tau_rows(d: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, summary) of every metric then every baseline, each by mean weighted tau, best first."""
    rows = [(kind, name, summ) for kind, block in (("metric", d["metrics"]), ("baseline", d["baselines"]))
            for name, summ in block.items()]
    return sorted(rows, key=lambda r: (r[0] != "metric", -_mean_or(r[2]["weighted_tau"]["mean"])))


def trust(d: dict[str, Any]) -> str:
    """Which score to trust on this zoo: the metric with the highest mean weighted τ, unless a baseline (kNN, the
    parameter count, ...) does better, in which case the baseline."""
    rows = [r for r in _tau_rows(d) if r[2]["weighted_tau"]["mean"] is not None]
    base_names = set(d["baselines"]) | PROBES
    metrics = [r for r in rows if r[0] == "metric" and r[1] not in base_names]
    baselines = sorted((r for r in rows if r[1] in base_names), key=lambda r: -r[2]["weighted_tau"]["mean"])
    if not metrics:
        return "No metric has a weighted τ on this zoo (too few models with a ground truth)."
    _, name, summ = metrics[0]
    mean = summ["weighted_tau"]["mean"]
    per_target = [v for t, v in summ["weighted_tau"].items() if t != "mean" and v is not None]
    if baselines and baselines[0][2]["weighted_tau"]["mean"] >= mean:
        b, bm = baselines[0][1], baselines[0][2]["weighted_tau"]["mean"]
        return (f"No transferability metric beats the {b} baseline on this zoo (mean τw {bm:.2f}; the best metric, "
                f"{name}, {mean:.2f}): trust {b}.")
    ahead = (f", ahead of the best baseline, {baselines[0][1]} ({baselines[0][2]['weighted_tau']['mean']:.2f})"
             if baselines else "")
    return (f"Trust {name} on this zoo: the highest mean weighted τ, {mean:.2f} over {len(per_target)} target"
            f"{'s' if len(per_target) != 1 else ''} (lowest {min(per_target):.2f}){ahead}.")


def rank_verdicts(d: dict[str, Any]) -> dict[str, Any]:
    out = {"trust": trust(d)}
    priors = prior_verdict(d)
    return {**out, "priors": priors} if priors else out


def _gt_detail(d: dict[str, Any], target: str, ref: str) -> str:
    """What a ground-truth accuracy rests on: † the probe stands in, the protocol chosen (``best``), the probe
    reference, ⚠ under-trained, its interval."""
    cell = (d.get("cells") or {}).get(target, {}).get(ref) or {}
    ci = ((d.get("checks") or {}).get("targets", {}).get(target, {}).get("intervals") or {}).get(ref)
    parts = []
    if cell.get("fallback"):
        parts.append("† probe")
    else:
        if cell.get("under_trained"):
            parts.append("⚠ under-trained")
        if cell.get("chosen_protocol") and cell["chosen_protocol"] != "linear_probe":
            if d.get("protocol") == "best":
                parts.append(cell["chosen_protocol"])
            parts.append(f"probe {cell['probe_accuracy']:.3f}")
    return " · ".join([*parts, interval(ci, 3)] if ci else parts)


def rank_tables(d: dict[str, Any]) -> list[Table]:
    targets = list(d["targets"])
    tau_cols = [Column("score", "score"),
                *(Column(t, _short(t), "number", detail=f"{t} ci") for t in targets),
                Column("mean", f"mean τw ({d['protocol']})", "number", strong=True),
                Column("rel_at_1", "mean rel@1", "number")]
    rows = []
    for kind, name, summ in _tau_rows(d):
        if kind == "baseline" and name in d["metrics"]:
            continue  # knn: the same numbers as its metric row
        label = " (prior)" if name in PRIORS else " (baseline)" if kind == "baseline" else ""
        row = {"score": name + label, "mean": summ["weighted_tau"]["mean"],
               "rel_at_1": summ["rel_at_1"]["mean"]}
        for t in targets:
            row[t], row[f"{t} ci"] = summ["weighted_tau"][t], interval(summ["weighted_tau_ci"].get(t))
        rows.append(row)
    out = [Table("Weighted Kendall τ per target", tau_cols, rows, name="tau", verdicts=[trust(d)], notes=[
        "τw: scipy.stats.weightedtau(score, accuracy) (top models weigh more); [95 % bootstrap interval over "
        "models]; rel@1: accuracy of the top-scored model / best accuracy. Baselines: random scores (mean of 1000 "
        "draws), kNN (a cross-validated probe); priors: parameter count, source accuracy, ImageNet accuracy, "
        "size_prior (FLOPs), each ranking the models it has no value for last."]), *evidence_tables(d)]
    names = {m["ref"]: m["name"] for m in d["models"]}
    if d.get("ensemble"):
        cols = [Column("target", "target"), Column("chosen", "chosen set"),
                *(Column(k, label, "number", 4) for k, label in (
                    ("chosen_accuracy", "its accuracy"), ("top_k_consensus_accuracy", "top-K consensus"),
                    ("best_single_accuracy", "best single"), ("random_mean_accuracy", "random mean"),
                    ("random_max_accuracy", "random max")))]
        erows = [{**{c.key: e.get(c.key) for c in cols[2:]}, "target": t,
                  "chosen": ", ".join(names.get(m, m) for m in e["chosen"])} for t, e in d["ensemble"].items()]
        out.append(Table("Ensemble selection", cols, erows, name="ensemble", notes=[
            "Test accuracy of a linear probe on the members' concatenated, standardised features."]))
    gt_rows = [{"model": m["name"], **{t: d["ground_truth"][t].get(m["ref"]) for t in targets},
                **{f"{t} detail": _gt_detail(d, t, m["ref"]) for t in targets}} for m in d["models"]]
    out.append(Table("Ground truth (test accuracy)", [Column("model", "model"), *(
        Column(t, _short(t), "number", detail=f"{t} detail") for t in targets)], gt_rows, name="ground_truth",
        notes=["[95 % bootstrap interval over test examples]; probe: the linear probe on the model's frozen features, "
               "trained on the same examples (⚠: a trained cell below it); † no training possible: the probe stands "
               "in."]))
    return out


# -- bench merge ---------------------------------------------------------------------------------------------------


def merge_tables(d: dict[str, Any]) -> list[Table]:
    tasks = list(d["tasks"])
    cols = [Column("method", "method"), *(Column(f"acc:{n}", n, "number") for n in tasks),
            Column("mean", "mean", "number", strong=True), Column("normalized", "normalised", "number"),
            Column("published", "published ViT-B/32 (8 tasks)", "number", 1), Column("seconds", "merge s", "seconds")]
    rows = [{"method": r["method"], **{f"acc:{n}": r["accuracy"].get(n) for n in tasks}, "mean": r["mean"],
             "normalized": r["normalized"], "published": merge_published(r["method"]) or "",
             "seconds": "" if r["seconds"] is None else r["seconds"]} for r in d["rows"]]
    o = d.get("options") or {}
    note = ("Accuracy of the merged network with each task's own head on that task's test split. Normalised: merged / "
            "individually fine-tuned, averaged over tasks. base_with_heads: the pretrained network with the "
            "fine-tuned heads (the published 'pretrained' row is zero-shot CLIP). Published: TIES-Merging and "
            "AdaMerging papers (adamerging ~ atlas with the entropy objective).")
    if o.get("tuned_lam"):
        note += f" +tuned rows: lam picked on held-out training examples from {o.get('lam_grid')}: {o['tuned_lam']}."
    return [Table("Accuracy per task and method", cols, rows, name="methods",
                  notes=[*(f"⚠ {w}" for w in d.get("warnings") or []), note])]


# -- bench domain --------------------------------------------------------------------------------------------------


def domain_tables(d: dict[str, Any]) -> list[Table]:
    trade = d.get("default_trade_off", 1.0)
    out = []
    for shift, cells in d["cells"].items():
        base = cells.get("source_only", {}).get("kept_mean")
        rows = []
        for m, c in cells.items():
            secs = [r["seconds"] for r in d["runs"] if r["shift"] == shift and r["method"] == m
                    and (m == "source_only" or r["trade_off"] == trade)]
            rows.append({"method": m, "kept": c["kept_mean"], "kept_sd": c["kept_sd"],
                         "best": c["oracle_best_mean"], "best_sd": c["oracle_best_sd"],
                         "delta": "" if m == "source_only" or base is None or c["kept_mean"] is None
                         else c["kept_mean"] - base, "seconds": float(np.median(secs)) if secs else None})
        sup = (d.get("bounds") or {}).get(shift, {}).get("target_supervised") or []
        if sup:
            rows.append({"method": "target-supervised (upper bound)", "kept": float(np.mean(sup)),
                         "kept_sd": float(np.std(sup, ddof=1)) if len(sup) > 1 else None})
        out.append(Table(f"{shift}: target accuracy per method (trade-off {trade:g}, mean ± sd over seeds)", [
            Column("method", "method"), Column("kept", "kept by guarded", "mean_sd", sd="kept_sd"),
            Column("best", "oracle's best epoch", "mean_sd", sd="best_sd"),
            Column("delta", "vs source_only (kept, points)", "points"),
            Column("seconds", "seconds per run", "seconds", 0)], rows, name=f"methods:{shift}", notes=[
            "Kept: the checkpoint the default selector kept (no target labels); oracle's best epoch: the best "
            "epoch of the same runs by target accuracy. Target-supervised: fine-tuned on the labelled target "
            "sample."]))
    for shift, sel in d["selectors"].items():
        n = sum(len(r["history"]) for r in d["runs"] if r["shift"] == shift and r["seed"] == d["seeds"][0])
        rows = [{"selector": s, **v} for s, v in sorted(sel.items(), key=lambda kv: (kv[1]["regret"] is None,
                                                                                       kv[1]["regret"] or 0))]
        out.append(Table(f"Label-free selection over every checkpoint of {shift} ({n} per seed: methods × "
                         "trade-offs × epochs; means over seeds)", [
                             Column("selector", "selector"), Column("pick_accuracy", "target accuracy of its pick",
                                                                    "number"),
                             Column("regret", "regret vs the oracle's pick", "mean_sd", sd="regret_sd"),
                             Column("spearman", "Spearman ρ (score, accuracy)", "number")], rows,
                         name=f"selectors:{shift}", notes=[
                             "Per seed, each selector picks one checkpoint among all of a shift's; its target "
                             "accuracy (oracle), the regret against the oracle's own pick, and Spearman's ρ between "
                             "the score and the target accuracy over the checkpoints."]))
    return out


# -- bench distill -------------------------------------------------------------------------------------------------


def _pts(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f}"


def _groups(table: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return sorted({(r["target"], r["label_share"]) for r in table}, key=lambda k: (k[0], -k[1]))


def distill_checks(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's evidence, per (target, label share): kd ≥ labels-only + 2 points with a share of the labels;
    multi-teacher ≥ the better single kd; kl_dp on the trained student with the weaker teacher ≥ −0.2 points where
    kd loses; and over the runs, the student ≥ 5× faster per image than the EfficientNet-Lite0 teacher."""
    out = []
    cell = {(r["target"], r["label_share"], r["row"]): r for r in d["table"]}
    for t, share in _groups(d["table"]):
        mine = {row: r for (tt, s, row), r in cell.items() if (tt, s) == (t, share)}
        kd = [r for row, r in mine.items() if row.startswith("kd[")]
        best_kd = max(kd, key=lambda r: r["accuracy_mean"]) if kd else None
        where = f"{_short(t)}, {100 * share:.0f} %"
        if share < 1 and best_kd:
            dv = best_kd["delta_vs_labels_only"]
            out.append({"check": "kd ≥ labels-only + 2 points", "where": where, "measured": f"{best_kd['row']} "
                        f"{_pts(dv)}", "verdict": "met" if dv is not None and dv >= 0.02 else "not met"})
        multi = [mine[m] for m in ("multi_avg", "multi_weighted") if m in mine]
        if multi and best_kd:
            m = max(multi, key=lambda r: r["accuracy_mean"])
            out.append({"check": "multi-teacher ≥ the better single kd", "where": where,
                        "measured": f"{m['row']} {m['accuracy_mean']:.3f} vs {best_kd['row']} "
                                    f"{best_kd['accuracy_mean']:.3f}",
                        "verdict": "met" if m["accuracy_mean"] >= best_kd["accuracy_mean"] else "not met"})
        kt = mine.get("kd_trained[weak]") or next((r for row, r in mine.items() if row.startswith("kd_trained")), None)
        kl = mine.get("kl_dp_trained[weak]") or next((r for row, r in mine.items()
                                                      if row.startswith("kl_dp_trained")), None)
        if kt and kl:
            loses = kt["delta_vs_labels_only"] is not None and kt["delta_vs_labels_only"] < 0
            ok = kl["delta_vs_labels_only"] is not None and kl["delta_vs_labels_only"] >= -0.002
            out.append({"check": "kl_dp on the trained student, weaker teacher: Δ ≥ −0.2 where kd loses",
                        "where": where, "measured": f"kd {_pts(kt['delta_vs_labels_only'])}, kl_dp "
                                                    f"{_pts(kl['delta_vs_labels_only'])}",
                        "verdict": ("met" if ok else "not met") if loses else
                        "kd does not lose here; kl_dp " + ("≥ −0.2" if ok else "< −0.2")})
        out += _beyond_kd_check(mine, where)
    # the big teacher the student replaces: the runs that distil from it (its kd and feature rows, the multi rows)
    s = [r for r in d["runs"] if r.get("teacher_ms_per_image") and r.get("ms_per_image")
         and ("efficientnet_lite0" in r["row"] or r["row"].startswith("multi"))]
    if s:
        sp = [max(r["teacher_ms_per_image"]) / r["ms_per_image"] for r in s]
        out.append({"check": "student ≥ 5× faster per image than EfficientNet-Lite0 (each run measures both)",
                    "where": f"{len(s)} runs", "measured": f"median {float(np.median(sp)):.1f}× (min {min(sp):.1f}×)",
                    "verdict": "met" if np.median(sp) >= 5 else "not met"})
    return out


def _beyond_kd_check(mine: dict[str, dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Issue 33: the best of dkd / dist / kd_zscore ≥ kd from the same (strongest) teacher + 2 points, and none of
    them below labels-only."""
    newer = [r for row, r in mine.items() if row.split("[")[0] in ("dkd", "dist", "kd_zscore")]
    base = mine.get("labels_only")
    kd = next((mine[row] for row in mine if newer and row == "kd[" + newer[0]["row"].split("[", 1)[1]), None)
    if not (newer and kd and base):
        return []
    best = max(newer, key=lambda r: r["accuracy_mean"])
    low = [r["row"] for r in newer if r["accuracy_mean"] < base["accuracy_mean"]]
    return [{"check": "best of dkd/dist/kd_zscore ≥ kd + 2 points", "where": where,
             "measured": f"{best['row']} {best['accuracy_mean']:.3f} vs {kd['row']} {kd['accuracy_mean']:.3f}",
             "verdict": "met" if best["accuracy_mean"] >= kd["accuracy_mean"] + 0.02 else "not met"},
            {"check": "dkd/dist/kd_zscore ≥ labels-only", "where": where,
             "measured": "below: " + ", ".join(low) if low else f"all ≥ {base['accuracy_mean']:.3f}",
             "verdict": "not met" if low else "met"}]


_CHECK_COLUMNS = [Column("check", "check"), Column("where", "target, labels"), Column("measured", "measured"),
                  Column("verdict", "verdict")]


def distill_tables(d: dict[str, Any]) -> list[Table]:
    out = [Table("Teachers (fine-tuned on the labelled part)", [
        Column("target", "target"), Column("label_share", "labels", "percent", 0), Column("teacher", "teacher"),
        Column("test_accuracy", "test accuracy", "number"), Column("val_accuracy", "held-out accuracy", "number"),
        Column("params", "parameters", "count"), Column("ms_per_image", "ms per image", "number", 2)],
        [{**t, "teacher": _short(t["teacher"])} for t in d.get("teacher_runs", [])], name="teachers")]
    cols = [Column("student", "student"), Column("row", "row"),
            Column("accuracy_mean", "test accuracy (mean ± sd)", "mean_sd", sd="accuracy_sd"),
            Column("last_accuracy_mean", "last epoch (mean ± sd)", "mean_sd", sd="last_accuracy_sd"),
            Column("delta_vs_labels_only", "Δ vs labels only (points)", "points"),
            Column("transfer_delta", "transfer Δ vs its start (points)", "points"),
            Column("knowledge_gain", "knowledge gain", "percent"), Column("knowledge_loss", "knowledge loss", "percent"),
            Column("params", "parameters", "count"), Column("ms_per_image", "ms per image", "number", 2),
            Column("n", "seeds", "count")]
    for t, share in _groups(d["table"]):
        rows = [{**r, "delta_vs_labels_only": "" if r["row"] == "labels_only" else r["delta_vs_labels_only"]}
                for r in d["table"] if (r["target"], r["label_share"]) == (t, share)]
        out.append(Table(f"{t}, {100 * share:.0f} % of the training labels" + (
            " (the rest distilled as unlabelled examples)" if share < 1 else ""), cols, rows,
            name=f"rows:{t}:{share:g}"))
    out[-1].notes.append("kd[T]: a fresh student from teacher T; multi_avg / multi_weighted: all teachers; "
                         "kd_trained / kl_dp_trained: the labels-only student distilled further from the weakest "
                         "teacher (gain and loss against that starting point).")
    out.append(Table("Checks", _CHECK_COLUMNS, distill_checks(d), name="checks"))
    return out


# -- bench continual -----------------------------------------------------------------------------------------------


def continual_tables(d: dict[str, Any]) -> list[Table]:
    cols = [Column("strategy", "strategy"), Column("acc", "ACC", "mean_sd", sd="acc_sd"),
            Column("bwt", "BWT", "signed_sd", sd="bwt_sd"), Column("fwt", "FWT", "signed_sd", sd="fwt_sd"),
            Column("seconds", "run s", "seconds"), Column("seconds_per_task", "s / task", "seconds"),
            Column("peak_growth_mb", "peak memory growth (MB)", "number", 0),
            Column("extra_params_per_task", "extra parameters / task", "count"),
            Column("mask_bits_per_task", "mask bits / task", "count"),
            Column("bytes_per_class", "bytes / class", "count"), Column("shared_bytes", "shared bytes", "count")]
    out = []
    for stream in dict.fromkeys(r["stream"] for r in d["table"]):
        rows = sorted((r for r in d["table"] if r["stream"] == stream), key=lambda r: -_mean_or(r["acc"]))
        out.append(Table(stream, cols, rows, name=f"stream:{stream}", notes=[
            f"{s['strategy']}: not run ({s['why']})." for s in d.get("skipped", []) if s["stream"] == stream]))
    if out:
        out[-1].notes.append("GEM's ACC, BWT, FWT (docs/continual.md). run s: the whole run, the accuracy matrix's "
                             "measurements included; s / task: each task's learning alone, averaged over the tasks. "
                             "Peak memory growth: the largest resident set "
                             "during the run minus the one before it, sampled every 50 ms (one process: memory freed "
                             "by an earlier run may be reused). bytes / class: what the strategy keeps per class "
                             "(a prototype, a column of statistics, buffered examples); shared bytes: what it keeps "
                             "for every class together (a Gram matrix, bases, masks, a penalty's anchors).")
    return out


# -- bench prune ---------------------------------------------------------------------------------------------------

_PRUNE_LABEL = {"full": "full source", "random": "random (baseline)", "bottom": "bottom of label_map"}


def prune_checks(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target: label_map or feature_map (the better) within 1 point of the full source, above random, with
    ≥ 1.8× less pretraining time."""
    out = []
    for t in d["targets"]:
        rows = {x["row"]: x for x in d["table"] if x["target"] == t}
        maps = [rows[m] for m in ("label_map", "feature_map") if m in rows]
        if not maps:
            continue
        best, rnd = max(maps, key=lambda x: x["accuracy_mean"]), rows.get("random")
        speed = best.get("speedup_vs_full") or 0.0
        ok = (best["delta_vs_full"] >= -0.01 and (rnd is None or best["accuracy_mean"] > rnd["accuracy_mean"])
              and speed >= 1.8)
        out.append({"target": t, "best": f"{best['row']} {best['accuracy_mean']:.3f}",
                    "delta_vs_full": best["delta_vs_full"],
                    "vs_random": None if rnd is None else best["accuracy_mean"] - rnd["accuracy_mean"],
                    "speedup_vs_full": best.get("speedup_vs_full"), "verdict": "met" if ok else "not met"})
    return out


def prune_tables(d: dict[str, Any]) -> list[Table]:
    cols = [Column("row", "pretrained on"), Column("accuracy_mean", "target accuracy", "mean_sd", sd="accuracy_sd"),
            Column("delta_vs_full", "Δ vs full (points)", "points"), Column("n_classes", "classes", "count"),
            Column("n_pretrain", "examples", "count"), Column("pretrain_seconds", "pretraining s", "seconds"),
            Column("speedup_vs_full", "speed-up", "ratio"),
            Column("source_accuracy", "source test accuracy (%)", "number", 1), Column("kept", "kept classes")]
    out = []
    for t in d["targets"]:
        rows = [{**x, "row": _PRUNE_LABEL.get(x["row"], x["row"]), "n_classes": len(x["classes"]),
                 "delta_vs_full": "" if x["row"] == "full" else x["delta_vs_full"],
                 "kept": "all" if x["row"] == "full" else ", ".join(x["classes"])}
                for x in d["table"] if x["target"] == t]
        out.append(Table(f"{t} (source {d['source']}, {d['arch']}, keep {d['keep']:g}, seeds {d['seeds']})", cols,
                         rows, name=f"target:{t}"))
    if out:
        out[-1].notes.append("Δ vs full: the mean over seeds of the difference to the full-source model of the same "
                             "seed. The mapping methods' surrogate is the full-source model of seed 0.")
    out.append(Table("Checks: a mapping within 1 point of the full source, above random, ≥ 1.8× less pretraining", [
        Column("target", "target"), Column("best", "best mapping"), Column("delta_vs_full", "Δ vs full", "points"),
        Column("vs_random", "vs random", "points"), Column("speedup_vs_full", "speed-up", "ratio"),
        Column("verdict", "verdict")], prune_checks(d), name="checks"))
    return out


def with_tables(d: dict[str, Any], tables: list[Table]) -> dict[str, Any]:
    """``d`` with its declared tables (what the reports render)."""
    return {**d, "tables": [t.to_dict() for t in tables]}
