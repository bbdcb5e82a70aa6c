"""``bench rank --layers``: every ranking of the bench scores the features of that layer mode, and a bad mode fails
before any work."""

import shutil

import pytest
from typer.testing import CliRunner

from transferlab.bench import bench_rank
from transferlab.errors import TransferlabError
from transferlab.rank import rank
from transferlab.zoo import Zoo, ZooModel


def _zoo(refs):
    return Zoo(name="layers", models=[ZooModel(ref=r) for r in refs])


def test_bench_rank_scores_the_layer_mode_it_is_given(tiny_timm_weights, tmp_path):
    other = tmp_path / "other.safetensors"  # a second tiny model (bench rank needs three)
    shutil.copy(tiny_timm_weights, other)
    zoo = [f"timm:test_efficientnet@{tiny_timm_weights}", f"timm:test_efficientnet@{other}", "builtin:pixels"]
    r = bench_rank(_zoo(zoo), "builtin:digits", metrics="logme", limit=100, image_size=32, n_boot=20, layers="best")
    assert r.options["layers"] == "best"
    direct = {m.model: m.scores["logme"] for m in rank("builtin:digits", zoo, "logme", limit=100, image_size=32,
                                                       layers="best").models}
    assert r.scores["builtin:digits"]["logme"] == pytest.approx(direct, rel=1e-12)
    # not the output's: the tiny model's fourth layer (-0.0402) beats its output (-0.0589), computed by rank
    assert r.scores["builtin:digits"]["logme"][zoo[0]] > -0.05


def test_a_bad_layer_mode_fails_before_any_work(tmp_path):
    with pytest.raises(TransferlabError, match="unknown layer mode 'top'"):
        bench_rank(_zoo(["builtin:pixels"] * 3), "builtin:digits", layers="top")
    from transferlab.cli import app

    res = CliRunner().invoke(app, ["bench", "rank", "--targets", "builtin:digits", "--zoo", "builtin:vision",
                                   "--layers", "top", "--out", str(tmp_path / "b")])
    assert res.exit_code != 0 and "unknown layer mode 'top'" in str(res.exception)
