"""``bench continual`` on a tiny model: strategies × streams, supermasks skipped on class splits with the reason,
cached runs reused."""

from __future__ import annotations

import pytest

from transferlab.bench import bench_continual
from transferlab.errors import TransferlabError


def test_bench_continual_tiny(tmp_path, tiny_model_ref, monkeypatch):
    kw = dict(out=tmp_path / "b", streams=["builtin:shapes,builtin:textures", "builtin:fashion-mnist:5"],
              strategies=["naive", "supsup"], epochs=1, limit=20, test_limit=20, image_size=16, batch_size=8)
    r = bench_continual(tiny_model_ref, **kw)
    rows = {(x["stream"], x["strategy"]): x for x in r.table()}
    assert set(rows) == {("builtin:shapes,builtin:textures", "naive"), ("builtin:shapes,builtin:textures", "supsup"),
                         ("builtin:fashion-mnist:5", "naive")}
    assert r.skipped == [{"stream": "builtin:fashion-mnist:5", "strategy": "supsup",
                          "why": "supermasks need the task at test time (task-incremental streams only)"}]
    assert rows[("builtin:shapes,builtin:textures", "supsup")]["bwt"] == 0.0
    assert rows[("builtin:shapes,builtin:textures", "supsup")]["mask_bits_per_task"] > 0
    assert all(x["peak_mb"] > 0 and x["seconds"] > 0 for x in rows.values())
    # each task's learning alone (the accuracy matrix's measurements apart): less than the whole run
    assert all(0 < x["seconds_per_task"] * 2 < x["seconds"] for x in rows.values())
    assert rows[("builtin:shapes,builtin:textures", "naive")]["bytes_per_class"] == 0
    sup = rows[("builtin:shapes,builtin:textures", "supsup")]
    assert sup["shared_bytes"] >= 2 * sup["mask_bits_per_task"] // 8  # two tasks' masks
    paths = r.save(tmp_path / "b")
    assert "not run" in paths["html"].read_text()

    import transferlab.continual as cont

    monkeypatch.setattr(cont, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert bench_continual(tiny_model_ref, **kw).runs == r.runs


def test_bench_continual_refuses_an_unknown_strategy(tmp_path):
    with pytest.raises(TransferlabError, match="unknown continual strategy"):
        bench_continual("builtin:small_resnet_shapes", out=tmp_path, strategies=["gem"])


def test_bench_continual_refuses_options_for_no_strategy_before_any_run(tmp_path, monkeypatch):
    """--option ewk.lam=10 (a typo of ewc) was accepted and silently unused (H8's review)."""
    from transferlab.bench import _continual

    def no_run(**kw):
        raise AssertionError("a run started")

    monkeypatch.setattr(_continual, "continual_run", no_run)
    with pytest.raises(TransferlabError, match="--option for ewk: no such continual strategy; known: .*ewc"):
        bench_continual("builtin:small_resnet_shapes", out=tmp_path, strategies=["naive"],
                        strategy_options={"ewk": {"lam": 10.0}, "naive": {}})
