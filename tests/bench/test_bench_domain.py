"""bench domain on a tiny model: the runs, the bounds, the cells and every selector's pick/regret/ρ computed from the
recorded checkpoints, resumable run by run, and the outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from transferlab.bench import bench_domain
from transferlab.errors import TransferlabError


def test_bench_domain_tiny(tiny_model_ref, tmp_path):
    kw = dict(out=tmp_path / "b", shifts=[("builtin:digits", "builtin:digits-m")], methods="source_only,mcc",
              seeds=(0,), trade_offs=(0.3, 1.0), epochs=1, limit=60, test_limit=30, image_size=32, batch_size=8)
    r = bench_domain(tiny_model_ref, **kw)
    assert [(x["method"], x["trade_off"]) for x in r.runs] == [("source_only", 1.0), ("mcc", 0.3), ("mcc", 1.0)]
    assert len(r.bounds["digits→digits-m"]["target_supervised"]) == 1
    cell = r.cells()["digits→digits-m"]["mcc"]
    mcc1 = next(x for x in r.runs if x["method"] == "mcc" and x["trade_off"] == 1.0)
    assert cell["kept_mean"] == mcc1["kept_accuracy"] and cell["n"] == 1
    # every selector's pick among all 3 checkpoints (3 runs x 1 epoch), recomputed here from the records
    rows = [row for x in r.runs for row in x["history"]]
    assert len(rows) == 3
    ts = np.array([row["transfer_score"] for row in rows])
    oracle = np.array([row["oracle_accuracy"] for row in rows])
    sel = r.selectors()["digits→digits-m"]["transfer_score"]
    assert sel["pick_accuracy"] == oracle[int(np.argmax(ts))]
    assert sel["regret"] == pytest.approx(oracle.max() - oracle[int(np.argmax(ts))])
    constant = np.ptp(ts) == 0 or np.ptp(oracle) == 0
    assert sel["spearman"] == (None if constant else pytest.approx(spearmanr(ts, oracle).statistic))
    paths = r.save(tmp_path / "b")
    data = json.loads(paths["json"].read_text())
    assert set(data["selectors"]["digits→digits-m"]) == {"dev", "entropy", "guarded", "im", "snd", "source_val",
                                                         "transfer_score"}
    from transferlab.bench._domain import guarded_pick

    g = guarded_pick(r.runs)  # one seed: every run is seed 0's
    assert data["selectors"]["digits→digits-m"]["guarded"]["pick_accuracy"] == g["accuracy"]
    assert data["selectors"]["digits→digits-m"]["guarded"]["fell_back"] == int(g["fell_back"])
    assert "Label-free selection over every checkpoint" in paths["html"].read_text()
    again = bench_domain(tiny_model_ref, **kw)  # every run and the bound from the cache
    assert again.runs == json.loads(json.dumps(r.runs)) and again.bounds == r.bounds


def test_bench_domain_runs_a_source_free_method_from_the_seeds_source_model(tiny_model_ref, tmp_path):
    """A source-free job trains the seed's source_only model again (the same run: its source_val pick is the source
    job's) and adapts it on the target alone, at trade-off 1 only."""
    r = bench_domain(tiny_model_ref, out=tmp_path / "b", shifts=[("builtin:digits", "builtin:digits-m")],
                     methods="source_only,nrc", seeds=(0,), trade_offs=(0.3, 1.0), epochs=1, limit=60, test_limit=30,
                     image_size=32, batch_size=8, supervised=False)
    so, nrc = r.runs
    assert (so["method"], nrc["method"], nrc["trade_off"]) == ("source_only", "nrc", 1.0)
    assert nrc["source_model_accuracy"] == so["picks"]["source_val"]["oracle_accuracy"]
    assert "val_accuracy" not in nrc["history"][0] and "nrc" in r.cells()["digits→digits-m"]


def test_bench_domain_bad_input(tiny_model_ref, tmp_path):
    with pytest.raises(TransferlabError, match="unknown domain adaptation method\\(s\\) dan"):
        bench_domain(tiny_model_ref, out=tmp_path, methods="dan")
    with pytest.raises(TransferlabError, match="trade-offs must be > 0"):
        bench_domain(tiny_model_ref, out=tmp_path, trade_offs=(0.0,))


def test_bench_domain_cli_refuses_a_malformed_shift(tmp_path, capsys):
    from transferlab.cli import main

    assert main(["bench", "domain", "--shifts", "builtin:digits", "--out", str(tmp_path / "b"), "-q"]) == 2
    assert "SOURCE>TARGET pairs" in capsys.readouterr().err


def _run(method, rows, val_pick=None):
    history = [{"epoch": i + 1, **r} for i, r in enumerate(rows)]
    picks = {"source_val": val_pick} if val_pick else {}
    return {"method": method, "history": history, "picks": picks}


def test_guarded_pick_across_runs_keeps_the_source_accuracy_and_falls_back():
    from transferlab.bench._domain import guarded_pick

    so = _run("source_only", [{"transfer_score": 0.1, "val_accuracy": 0.90, "oracle_accuracy": 0.30,
                               "guarded.balance": 0.9}],
              {"epoch": 1, "score": 0.90, "oracle_accuracy": 0.30})
    good = {"transfer_score": 0.5, "val_accuracy": 0.89, "oracle_accuracy": 0.45, "guarded.balance": 0.9}
    destroying = {"transfer_score": 0.9, "val_accuracy": 0.60, "oracle_accuracy": 0.20, "guarded.balance": 0.9}
    collapsed = {"transfer_score": 0.8, "val_accuracy": 0.90, "oracle_accuracy": 0.10, "guarded.balance": 0.2}
    p = guarded_pick([so, _run("mcc", [destroying, collapsed, good])])
    assert p == {"accuracy": 0.45, "regret": 0.0, "fell_back": False, "source_only": 0.30}
    so_fail = _run("source_only", [{**so["history"][0], "guarded.balance": 0.2}], so["picks"]["source_val"])
    p = guarded_pick([so_fail, _run("mcc", [destroying, collapsed])])  # nothing passes: the source-only checkpoint
    assert p["fell_back"] and p["accuracy"] == 0.30 and p["regret"] == pytest.approx(0.0)
    assert guarded_pick([_run("mcc", [good])]) is None  # no source_only run: no reference


def test_bench_domain_refuses_options_for_no_method_before_any_run(tiny_model_ref, tmp_path, monkeypatch):
    """--option dan.hidden=8 (a typo of dann) was accepted and silently unused (H8's review)."""
    from transferlab.bench import _domain

    def no_run(**kw):
        raise AssertionError("a run started")

    monkeypatch.setattr(_domain, "domain_run", no_run)
    monkeypatch.setattr(_domain, "supervised_run", no_run)
    with pytest.raises(TransferlabError, match="--option for dan: no such domain adaptation method; known: .*dann"):
        bench_domain(tiny_model_ref, out=tmp_path, methods="source_only", seeds=(0,), method_options={
            "dan": {"hidden": 8}, "source_only": {"label_smoothing": 0.0}})
