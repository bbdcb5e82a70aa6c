"""CLI plumbing of merge and bench merge: several values after one flag, per-method options."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferlab.cli import main
from transferlab.cli.merge import expand_multi


def test_several_values_after_one_flag() -> None:
    argv = ["merge", "--method", "ties", "--models", "a", "b", "c", "--out", "o", "--data", "x", "y", "-q"]
    assert expand_multi(argv) == ["merge", "--method", "ties", "--models", "a", "--models", "b", "--models", "c",
                                  "--out", "o", "--data", "x", "--data", "y", "-q"]


def test_bench_merge_passes_options_per_method(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import transferlab.bench as bench
    from transferlab.bench import MergeBenchResult

    seen: dict[str, object] = {}

    def fake(model: str, targets: str, **kw: object) -> MergeBenchResult:
        seen.update(kw, model=model, targets=targets)
        return MergeBenchResult(model, ["t1", "t2"], ["t1", "t2"], {"t1": 0.8, "t2": 0.5},
                                {"ties": {"t1": 0.4, "t2": 0.5}}, {"ties": 1.0})

    monkeypatch.setattr(bench, "bench_merge", fake)
    rc = main(["bench", "merge", "--targets", "t1,t2", "--option", "ties.density=0.1", "--option",
               "atlas.objective=entropy", "--methods", "ties", "--fit-option", "lr=1e-4", "--fit-option",
               "head_lr_scale=3", "--out", str(tmp_path), "-q"])
    assert rc == 0
    assert seen["method_options"] == {"ties": {"density": 0.1}, "atlas": {"objective": "entropy"}}
    assert seen["methods"] == "ties" and seen["targets"] == "t1,t2"
    assert seen["fit_options"] == {"lr": 1e-4, "head_lr_scale": 3}
    import json

    rows = json.loads((tmp_path / "bench_merge.json").read_text())["rows"]
    assert rows[1] == {"method": "ties", "accuracy": {"t1": 0.4, "t2": 0.5}, "mean": 0.45,
                       "normalized": pytest.approx((0.4 / 0.8 + 0.5 / 0.5) / 2), "seconds": 1.0}


def test_merge_list_and_missing_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", "--list"]) == 0
    out = capsys.readouterr().out
    assert "regmean" in out and "TIES-Merging" in out
    assert main(["merge", "--method", "ties", "--base", "x", "--models", "a", "b"]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert main(["merge", "--base", "x", "--models", "a", "b", "--out", "o"]) == 2
    assert "--method is required: one of atlas, average, dare" in capsys.readouterr().err
