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
    assert "Label-free selection over every checkpoint" in paths["html"].read_text()
    again = bench_domain(tiny_model_ref, **kw)  # every run and the bound from the cache
    assert again.runs == json.loads(json.dumps(r.runs)) and again.bounds == r.bounds


def test_bench_domain_bad_input(tiny_model_ref, tmp_path):
    with pytest.raises(TransferlabError, match="unknown domain adaptation method\\(s\\) dan"):
        bench_domain(tiny_model_ref, out=tmp_path, methods="dan")
    with pytest.raises(TransferlabError, match="trade-offs must be > 0"):
        bench_domain(tiny_model_ref, out=tmp_path, trade_offs=(0.0,))


def test_bench_domain_cli_refuses_a_malformed_shift(tmp_path, capsys):
    from transferlab.cli import main

    assert main(["bench", "domain", "--shifts", "builtin:digits", "--out", str(tmp_path / "b"), "-q"]) == 2
    assert "SOURCE>TARGET pairs" in capsys.readouterr().err
