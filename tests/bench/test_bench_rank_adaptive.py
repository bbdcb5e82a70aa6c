"""``bench rank-adaptive`` on a tiny zoo: each (target, seed) row compares the adaptive ranking with the full one
(top-1, top-3 set, forward passes counted), the summary says which goal is met and which runs miss, runs are
cached, and the command writes its JSON and report."""

from __future__ import annotations

import json

import pytest

from transferlab.cli import main
from transferlab.errors import TransferlabError

TARGET = "builtin:digits"
OPTS = {"metrics": "knn,logme", "limit": 120, "image_size": 32}


def test_rows_summary_tables_and_cache(tiny_zoo, tmp_path, monkeypatch):
    from transferlab.bench import bench_rank_adaptive

    zoo, refs = tiny_zoo
    r = bench_rank_adaptive(zoo, [TARGET], seeds=[0, 1], out=tmp_path, **OPTS)
    rows = r.rows()
    assert [(x["target"], x["seed"]) for x in rows] == [(TARGET, 0), (TARGET, 1)]
    assert len(r.full) == 2  # with a limit, the seed draws the sample: one full ranking per seed
    for x, a in zip(rows, r.adaptive, strict=True):
        f = next(u for u in r.full if u["seed"] == x["seed"])
        assert sorted(a["order"]) == sorted(f["order"]) == sorted(refs)
        assert x["same_top1"] == (a["order"][0] == f["order"][0])
        assert x["same_top3"] == (set(a["order"][:3]) == set(f["order"][:3]))
        assert x["forward_passes_full"] == 120 * 3 and x["share"] == a["forward_passes"] / (120 * 3)
        assert 0 < x["share_seconds"] <= 1 and set(f["model_forward_seconds"]) == set(refs)
        if len(a["survivors"]) == 3:  # nothing dropped: every model ran every example, at the full ranking's cost
            assert x["share_seconds"] == pytest.approx(1.0)
    s = r.summary()
    assert s["top1_agreement"] == sum(x["same_top1"] for x in rows) / 2
    assert s["met"]["share"] == (s["share"] <= 0.3)
    assert len(s["misses"]) == sum(not (x["same_top1"] and x["same_top3"] and x["share"] <= 0.3) for x in rows)
    names = [t.name for t in r.tables()]
    assert names == ["runs", "summary"]
    paths = r.save(tmp_path / "out")
    assert json.loads(paths["json"].read_text())["summary"]["runs"] == 2
    assert "Adaptive against full ranking" in paths["html"].read_text()
    monkeypatch.setattr("transferlab.rank.rank_adaptive", lambda *a, **k: pytest.fail("cached runs are not redone"))
    monkeypatch.setattr("transferlab.rank.rank", lambda *a, **k: pytest.fail("cached runs are not redone"))
    again = bench_rank_adaptive(zoo, [TARGET], seeds=[0, 1], out=tmp_path, **OPTS)
    assert again.rows() == rows


def test_bad_input_fails_before_any_work(tmp_path):
    from transferlab.bench import bench_rank_adaptive

    with pytest.raises(TransferlabError, match="confidence must lie strictly between"):
        bench_rank_adaptive("builtin:vision", [TARGET], confidence=0.4, out=tmp_path)
    with pytest.raises(TransferlabError, match="at least one target and one seed"):
        bench_rank_adaptive("builtin:vision", [TARGET], seeds=[], out=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_the_command_writes_json_and_report(tiny_zoo, tmp_path, capsys):
    zoo, _ = tiny_zoo
    out = tmp_path / "o"
    rc = main(["bench", "rank-adaptive", "--zoo", zoo, "--targets", TARGET, "--seeds", "0", "--metrics",
               OPTS["metrics"], "--limit", "120", "--image-size", "32", "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "same top-1" in printed and "bench_rank_adaptive.json" in printed
    assert json.loads((out / "bench_rank_adaptive.json").read_text())["seeds"] == [0]
    assert (out / "report.html").is_file()


def test_forward_seconds_price_each_models_examples_at_its_full_cost():
    from transferlab.bench._rank_adaptive import _seconds_share

    adaptive = {"survivors": ["A"], "rounds": [{"examples": 10, "dropped": ["B"]}, {"examples": 40, "dropped": []}]}
    full = {"names": ["A", "B"], "order": ["a", "b"], "examples": 100, "model_forward_seconds": {"a": 9.0, "b": 1.0}}
    assert _seconds_share(adaptive, full) == pytest.approx((0.4 * 9.0 + 0.1 * 1.0) / 10.0)
    assert _seconds_share(adaptive, {**full, "model_forward_seconds": {"a": None, "b": 1.0}}) is None
