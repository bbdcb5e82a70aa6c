"""Every bench result declares its tables once: ``tables()`` shows every row of its ``table()``/``rows()`` with the
same numbers, ``to_dict()`` carries the tables and the verdicts (rank's which-score-to-trust, the checks), and the
HTML report and the Markdown render the declaration. Built from hand-made records: nothing is trained."""

from __future__ import annotations

import json
from typing import Any

import pytest

from transferlab.bench import (
    BenchResult,
    ContinualBenchResult,
    DistillBenchResult,
    DomainBenchResult,
    MergeBenchResult,
    PruneBenchResult,
)
from transferlab.report import Table, render_markdown

BLANK_OK = {"delta_vs_labels_only", "delta_vs_full"}  # shown empty on the reference row itself


def _covers(tables: list[Table], rows: list[dict[str, Any]], ident: tuple[str, ...]) -> None:
    """Each of ``rows`` is a row of one declared table, every declared column that reads one of its keys shows its
    value, and the Markdown of that table shows the formatted number."""
    for r in rows:
        hits = [(t, x) for t in tables for x in t.rows if all(x.get(k) == r[k] for k in ident)]
        assert hits, f"no declared table shows {[r[k] for k in ident]}"
        t, x = hits[0]
        shown = [c for c in t.columns if c.key in r and c.key not in ident]
        assert len(shown) >= 2
        md = render_markdown(t)
        for c in shown:
            if x[c.key] == "" and c.key in BLANK_OK:
                continue
            assert x[c.key] == r[c.key], (c.key, x[c.key], r[c.key])
            assert c.text(x) in md


def _summ(tau: float, ci=(0.1, 0.9)) -> dict[str, Any]:
    return {"t": {"weighted_tau": tau, "kendall_tau": tau, "rel_at_1": 0.9, "weighted_tau_ci": list(ci),
                  "top_model": "a"}}


def _rank(logme: float = 0.7) -> BenchResult:
    models = [{"ref": r, "name": r.upper(), "metadata": {}} for r in "abcdef"]
    gt = {"t": {m["ref"]: 0.5 + i / 20 for i, m in enumerate(models)}}
    return BenchResult("z", ["t"], "linear_probe", models, ["logme", "leep", "knn"], gt, {"t": {}},
                       {"logme": _summ(logme), "leep": _summ(0.5), "knn": _summ(0.6)},
                       {"random": _summ(0.0, (-0.5, 0.5)), "knn": _summ(0.6)},
                       {"ranking_seconds": 1.0, "ground_truth_seconds": 2.0, "ground_truth_over_ranking": 2.0})


def test_rank_tables_cover_table_and_the_verdict_is_in_to_dict():
    r = _rank()
    tau = next(t for t in r.tables() if t.name == "tau")
    shown = {x["score"]: x for x in tau.rows}
    for kind, name, vals, mean in r.table():
        if kind == "baseline" and name in r.quality:
            continue  # knn: its metric row shows the same numbers
        x = shown[name + (" (baseline)" if kind == "baseline" else "")]
        assert [x[t] for t in r.targets] == vals and x["mean"] == pytest.approx(mean)
    d = json.loads(json.dumps(r.to_dict()))  # what bench.json holds
    want = ("Trust logme on this zoo: the highest mean weighted τ, 0.70 over 1 target (lowest 0.70), ahead of the "
            "best baseline, knn (0.60).")
    assert d["verdicts"]["trust"] == want
    assert [t["verdicts"] for t in d["tables"] if t["name"] == "tau"] == [[want]]
    assert _rank(0.4).to_dict()["verdicts"]["trust"].startswith("No transferability metric beats the knn baseline")


def test_rank_report_renders_the_declared_verdict(monkeypatch):
    from transferlab.report import _rank_bench as _bench

    monkeypatch.setattr(_bench, "_scatters", lambda result: "")
    d = _rank().to_dict()
    d["verdicts"]["trust"] = d["tables"][0]["verdicts"][0] = "Trust the declaration."
    html = _bench.bench_report_html(d)
    assert "<p><b>Trust the declaration.</b></p>" in html and "Trust logme" not in html
    assert "<h2>Ground truth (test accuracy)</h2>" in html


def test_merge_tables_cover_rows():
    r = MergeBenchResult("m", ["t1", "t2"], ["t1", "t2"], {"t1": 0.8, "t2": 0.5},
                         {"ties": {"t1": 0.4, "t2": 0.5}, "average": {"t1": 0.6, "t2": 0.45}}, {"ties": 1.25})
    rows = [{"method": x["method"], "mean": x["mean"], "normalized": x["normalized"],
             **{f"acc:{n}": x["accuracy"][n] for n in r.names}} for x in r.rows()]
    _covers(r.tables(), rows, ("method",))
    assert "72.4" in render_markdown(r.tables()[0])  # the published TIES figure beside it
    assert r.to_dict()["tables"][0]["name"] == "methods"


def _history(oracle: list[float], score: list[float]) -> list[dict[str, Any]]:
    return [{"epoch": i + 1, "oracle_accuracy": o, **{k: s for k in ("transfer_score", "entropy")},
             "val_accuracy": s} for i, (o, s) in enumerate(zip(oracle, score, strict=True))]


def test_domain_tables_cover_cells_and_selectors():
    runs = [{"shift": "a→b", "method": m, "seed": seed, "trade_off": 1.0, "kept_accuracy": k + seed / 100,
             "oracle_best": k + 0.05, "seconds": 3.0 + seed, "picks": {"transfer_score": {}, "entropy": {},
                                                                       "source_val": {}},
             "history": _history([k, k + 0.05], [0.1 + seed, 0.3])}
            for m, k in (("source_only", 0.5), ("dann", 0.6)) for seed in (0, 1)]
    r = DomainBenchResult("m", [("a", "b")], ["source_only", "dann"], [0, 1], [1.0], runs,
                          {"a→b": {"target_supervised": [0.9, 0.92]}})
    tables = r.tables()
    cells = [{"method": m, "kept": c["kept_mean"], "kept_sd": c["kept_sd"], "best": c["oracle_best_mean"]}
             for m, c in r.cells()["a→b"].items()]
    _covers(tables, cells, ("method",))
    _covers(tables, [{"selector": s, **v} for s, v in r.selectors()["a→b"].items()], ("selector",))
    bound = next(x for t in tables for x in t.rows if x["method"].startswith("target-supervised"))
    assert bound["kept"] == pytest.approx(0.91)


def test_distill_tables_cover_table_and_the_checks_are_verdicts():
    runs = [{"target": "builtin:t", "label_share": 0.2, "student": "s", "seed": seed, "row": row,
             "test_accuracy": acc + seed / 100, "transfer_delta": 0.01, "knowledge_gain": 0.1, "knowledge_loss": 0.05,
             "params": 1000, "ms_per_image": 0.5, "seconds": 2.0}
            for row, acc in (("labels_only", 0.6), ("kd[big]", 0.65), ("multi_avg", 0.66)) for seed in (0, 1)]
    teachers = [{"target": "builtin:t", "label_share": 0.2, "teacher": "builtin:big", "test_accuracy": 0.8,
                 "val_accuracy": 0.79, "params": 10**6, "ms_per_image": 3.0}]
    r = DistillBenchResult(["builtin:t"], ["builtin:big", "x"], ["s"], [0, 1], [0.2], runs, teachers)
    _covers(r.tables(), r.table(), ("row",))
    checks = r.to_dict()["verdicts"]["checks"]
    assert checks[0] == {"check": "kd ≥ labels-only + 2 points", "where": "t, 20 %", "measured": "kd[big] +5.0",
                         "verdict": "met"}
    assert checks[1]["verdict"] == "met"  # multi_avg 0.665 ≥ kd 0.655
    assert next(t for t in r.tables() if t.name == "checks").rows == checks


def test_continual_tables_cover_table_and_say_what_was_skipped():
    runs = [{"stream": st, "strategy": s, "seed": seed, "acc": a + seed / 10, "bwt": -0.1, "fwt": None,
             "seconds": 1.5, "peak_mb": 100.0, "peak_growth_mb": 12.0, "extra_params_per_task": 1542,
             "mask_bits_per_task": 0} for st in ("s1", "s2") for s, a in (("naive", 0.3), ("replay", 0.5))
            for seed in (0, 1)]
    r = ContinualBenchResult("m", ["s1", "s2"], ["naive", "replay"], [0, 1], runs,
                             skipped=[{"stream": "s2", "strategy": "supsup", "why": "needs the task"}])
    tables = r.tables()
    for st in ("s1", "s2"):
        t = next(t for t in tables if t.title == st)
        _covers([t], [x for x in r.table() if x["stream"] == st], ("strategy",))
        assert [x["strategy"] for x in t.rows] == ["replay", "naive"]  # best ACC first
    assert "supsup: not run (needs the task)." in tables[1].notes


def test_prune_tables_cover_table_and_the_check_is_a_verdict():
    classes = {"full": ["a", "b", "c", "d"], "label_map": ["a", "b"], "feature_map": ["a", "c"],
               "random": ["b", "d"], "bottom": ["c", "d"]}
    acc = {"full": 0.8, "label_map": 0.795, "feature_map": 0.7, "random": 0.6, "bottom": 0.5}
    runs = [{"target": "t", "row": row, "seed": seed, "test_accuracy": acc[row] + seed / 100,
             "pretrain_seconds": 10.0 if row == "full" else 4.0, "classes": c, "n_pretrain": 10 * len(c),
             "source_accuracy": 70.0} for row, c in classes.items() for seed in (0, 1)]
    r = PruneBenchResult("src", ["t"], "resnet", 0.5, [0, 1], runs)
    _covers(r.tables(), [{k: v for k, v in x.items() if k != "row"} for x in r.table()], ("target", "classes"))
    assert [x["row"] for x in r.tables()[0].rows] == ["full source", "label_map", "feature_map", "random (baseline)",
                                                       "bottom of label_map"]
    (check,) = r.to_dict()["verdicts"]["checks"]
    assert check["best"] == "label_map 0.800" and check["delta_vs_full"] == pytest.approx(-0.005)
    assert check["speedup_vs_full"] == pytest.approx(2.5) and check["verdict"] == "met"


@pytest.mark.parametrize("make", ["merge", "prune"])
def test_the_html_report_renders_every_declared_table(make):
    from transferlab.report import merge_bench_html, prune_bench_html

    if make == "merge":
        r = MergeBenchResult("m", ["t1", "t2"], ["t1", "t2"], {"t1": 0.8, "t2": 0.5},
                             {"ties": {"t1": 0.4, "t2": 0.5}}, {"ties": 1.0})
        html = merge_bench_html(r.to_dict())
    else:
        runs = [{"target": "t", "row": row, "seed": 0, "test_accuracy": 0.5, "pretrain_seconds": 2.0,
                 "classes": ["a"], "n_pretrain": 5, "source_accuracy": 50.0} for row in ("full", "label_map")]
        r = PruneBenchResult("src", ["t"], "resnet", 0.5, [0], runs, {"epochs": 1})
        html = prune_bench_html(r.to_dict())
    for t in r.tables():
        assert all(f">{c.label}</th>" in html for c in t.columns)
