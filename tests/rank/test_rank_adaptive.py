"""rank_adaptive and ``rank --adaptive`` end to end with tiny real models: the features of each round's new
examples only, counted exactly, cached (a rerun computes none), the result's order, ranking.json and the report."""

from __future__ import annotations

import json

import pytest

from transferlab.cli import main
from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.rank import rank, rank_adaptive

METRICS = "knn,logme,hscore"


@pytest.fixture
def digits():
    return load_dataset("builtin:digits").stratified_sample(240, seed=0)


def _examples_run(a: dict) -> int:
    """The examples each model ran, from the rounds: a network the examples new in each round it took part in,
    pixels' PCA (fitted on the data) the whole subset of each round."""
    total = 0
    for model in {m for r in a["rounds"] for m in r["models"]}:
        sizes = [r["examples"] for r in a["rounds"] if model in r["models"]]
        total += sum(sizes) if "pixels" in model.lower() else sizes[-1]
    return total


def test_rounds_extract_only_new_examples_counted_and_cached(digits, tiny_model_ref, tmp_path):
    zoo = [tiny_model_ref, "builtin:pixels"]
    r = rank_adaptive(digits, zoo, METRICS, image_size=32, cache_dir=tmp_path, seed=0)
    a = r.adaptive
    assert a["sizes"] == [64, 128, 240]
    assert a["forward_passes"] == sum(rd["forward_passes"] for rd in a["rounds"]) == _examples_run(a)
    assert a["forward_passes_computed"] == a["forward_passes"]  # cold: every example run here
    assert a["forward_passes_full"] == 2 * 240
    assert r.cache["state"] == "cold"
    survivors = [m for m in r.models if m.name in a["survivors"]]
    assert r.models[:len(survivors)] == survivors  # survivors first, then the dropped ones
    assert [m.consensus_rank for m in r.models] == [1, 2]
    assert all(m.timings["examples"] == a["rounds"][-1]["examples"] for m in survivors)
    # a rerun reads every round's slice from the cache: no forward pass, the same ranking
    again = rank_adaptive(digits, zoo, METRICS, image_size=32, cache_dir=tmp_path, seed=0)
    assert again.adaptive["forward_passes_computed"] == 0 and again.timings["forward_seconds"] == 0.0
    assert again.adaptive["forward_passes"] == a["forward_passes"]
    assert [m.model for m in again.models] == [m.model for m in r.models]
    assert again.cache["state"] == "warm"
    # the files say it: ranking.json carries the rounds, the report its section, the notes the saving
    paths = r.save(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["adaptive"]["rounds"][0]["examples"] == 64 and data["adaptive"]["order"] == [m.name for m in r.models]
    assert "Adaptive ranking" in paths["html"].read_text()
    assert r.notes[0].startswith("Adaptive ranking:") and "forward passes" in r.notes[0]


def test_the_adaptive_top1_is_the_full_rankings(digits, tiny_model_ref, tmp_path):
    """Two tiny models: whether or not one is dropped, the adaptive ranking's first is the full ranking's, and it
    never runs more examples than the full ranking (pixels' PCA, refitted on each round's subset, aside)."""
    zoo = [tiny_model_ref, "builtin:pixels"]
    full = rank(digits, zoo, METRICS, image_size=32, cache_dir=tmp_path)
    ad = rank_adaptive(digits, zoo, METRICS, image_size=32, cache_dir=tmp_path, seed=1)
    assert ad.best().model == full.best().model
    network = next(m for m in ad.models if m.model == tiny_model_ref)
    assert network.timings["examples"] <= 240
    assert {m.model for m in ad.models} == {m.model for m in full.models}


def test_bad_settings_fail_before_any_work(digits, tmp_path):
    with pytest.raises(TransferlabError, match="confidence must lie strictly between 0.5 and 1"):
        rank_adaptive(digits, ["builtin:pixels", "builtin:nope"], confidence=1.0, cache_dir=tmp_path)
    assert not (tmp_path / "features").exists()


def test_rank_adaptive_on_the_command_line(tiny_model_ref, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["rank", "builtin:digits", "--zoo", f"{tiny_model_ref},builtin:pixels", "--metrics", METRICS,
               "--image-size", "32", "--limit", "200", "--adaptive", "--confidence", "0.9", "--out", str(out),
               "--cache-dir", str(tmp_path / "c")])
    assert rc == 0
    assert "Adaptive ranking:" in capsys.readouterr().out
    data = json.loads((out / "ranking.json").read_text())
    assert data["adaptive"]["settings"]["confidence"] == 0.9 and data["adaptive"]["forward_passes"] > 0
    for bad, said in ((["--confidence", "1.5"], "confidence must lie strictly between"),
                      (["--ensemble", "2"], "--adaptive ranks in this process")):
        assert main(["rank", "builtin:digits", "--zoo", "builtin:pixels", "--adaptive", *bad, "--out",
                     str(tmp_path / "x")]) == 2
        assert said in capsys.readouterr().err.replace("\n", " ")

