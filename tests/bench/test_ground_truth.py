"""The fine-tuning ground truth of bench rank: a grid per cell with early stopping, the best validation point kept,
the linear-probe reference and the under-trained flag, fallbacks for models that cannot train, a protocol that
cannot apply refused before any work, `best`, and the checks on the test split's power to separate the models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferlab.bench import bench_rank
from transferlab.bench._checks import accuracy_intervals, ground_truth_checks, overlap_fraction
from transferlab.bench._ground_truth import (
    default_grid,
    grid_points,
    ground_truth_cell,
    pack_correct,
    unpack_correct,
)
from transferlab.errors import TransferlabError


def test_default_grids():
    assert default_grid("finetune") == {"lr": [0.003, 0.0009, 0.0003], "head_lr_scale": [1.0, 10.0]}
    assert default_grid("lora") == {"lr": [0.01, 0.003, 0.001], "head_lr_scale": [1.0, 10.0]}
    assert default_grid("head") == {"lr": [0.1, 0.03, 0.01]}  # no head multiplier: the head is all that trains
    assert default_grid("linear_probe") == {}
    assert grid_points({"lr": [1, 2], "h": [3, 4]}) == [{"lr": 1, "h": 3}, {"lr": 1, "h": 4}, {"lr": 2, "h": 3},
                                                        {"lr": 2, "h": 4}]


def test_correct_bits_round_trip():
    c = np.random.default_rng(0).random(1001) < 0.3
    assert np.array_equal(unpack_correct(pack_correct(c), 1001), c)


def test_a_cell_keeps_the_best_validation_point_and_its_test_accuracy(tiny_zoo, tmp_path):
    _, refs = tiny_zoo
    cell = ground_truth_cell(refs[0], "builtin:digits", "finetune", limit=80, seed=0, cache_root=str(tmp_path),
                             options={"image_size": 32, "epochs": 2, "patience": 1},
                             grid={"finetune": {"lr": [3e-3, 1e-7]}})
    run = cell["runs"]["finetune"]
    assert [p["lr"] for p in run["grid"]] == [3e-3, 1e-7]
    vals = [p["val_accuracy"] for p in run["grid"]]
    assert run["chosen"] == int(np.argmax(vals))  # the first of equals
    assert cell["test_accuracy"] == run["grid"][run["chosen"]]["test_accuracy"]
    assert all(1 <= p["epochs_run"] <= 2 for p in run["grid"])
    # the probe reference: trained on the same 90 % of the examples fit trains on, scored on the whole test split
    assert cell["probe_accuracy"] == cell["runs"]["linear_probe"]["test_accuracy"] and cell["n_test"] == 359
    assert cell["under_trained"] == (cell["test_accuracy"] < cell["probe_accuracy"])
    assert cell["lr_at_grid_edge"] == {0: "highest", 1: "lowest"}[run["chosen"]]  # a two-point grid: always an edge
    assert unpack_correct(cell["correct"], 359).mean() == pytest.approx(cell["test_accuracy"])
    again = ground_truth_cell(refs[0], "builtin:digits", "finetune", limit=80, seed=0, cache_root=str(tmp_path),
                              options={"image_size": 32, "epochs": 2, "patience": 1},
                              grid={"finetune": {"lr": [3e-3, 1e-7]}})
    assert again["cached"] and again["test_accuracy"] == cell["test_accuracy"]
    from transferlab.bench._ground_truth import cell_key

    base = cell_key({"m": 1}, "tr", "te", "finetune", {"epochs": 2})
    assert cell_key({"m": 1}, "tr", "te", "finetune", {"epochs": 2}, seed=1) != base  # another seed is another cell
    assert cell_key({"m": 1}, "tr", "te", "finetune", {"epochs": 3}) != base
    assert cell_key({"m": 1}, "tr", "te", "finetune", {"epochs": 2}, seed=0) == base


def test_an_under_trained_cell_is_flagged_and_a_baseline_falls_back_to_its_probe(tiny_zoo, tmp_path, caplog):
    """A learning rate of 1e-7 for one epoch leaves the random head in place: chance accuracy, far below the probe
    on the same frozen features. It is flagged in bench.json, the warnings and the HTML; pixels cannot train: its
    probe stands in, marked, and that is said before any work."""
    zoo, refs = tiny_zoo
    r = bench_rank(zoo, "builtin:digits", protocol="finetune", metrics="logme,knn", limit=80, image_size=32,
                   epochs=1, grid={"lr": [1e-7]}, n_boot=20)
    cells = r.cells["builtin:digits"]
    for ref in refs[:2]:
        assert cells[ref]["test_accuracy"] < 0.2 < cells[ref]["probe_accuracy"]
        assert cells[ref]["under_trained"] and cells[ref]["chosen_protocol"] == "finetune"
    assert {u["model"] for u in r.checks["under_trained"]} == set(refs[:2])
    pixels = cells["builtin:pixels"]
    assert pixels["fallback"] and pixels["chosen_protocol"] == "linear_probe" and not pixels["under_trained"]
    assert r.ground_truth["builtin:digits"]["builtin:pixels"] == pixels["probe_accuracy"]
    first = next(i for i, rec in enumerate(caplog.records) if "stands in as its ground truth" in rec.getMessage())
    assert "builtin:pixels is a baseline" in caplog.records[first].getMessage()
    assert any("is under-trained: finetune reached" in w for w in r.checks["warnings"])
    paths = r.save(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["cells"]["builtin:digits"][refs[0]]["runs"]["finetune"]["grid"][0]["lr"] == 1e-7
    html = paths["html"].read_text()
    assert html.count("⚠ under-trained") == 2 and "† probe" in html and "is under-trained" in html


def test_a_protocol_that_cannot_apply_is_refused_before_any_work(tiny_zoo, monkeypatch):
    import transferlab.fit
    import transferlab.rank

    zoo, _ = tiny_zoo

    def no_work(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(transferlab.rank, "rank", no_work)
    monkeypatch.setattr(transferlab.fit, "fit", no_work)
    with pytest.raises(TransferlabError, match="protocol lora cannot apply to timm:test_efficientnet.*match no "
                                               "adaptable layer"):
        bench_rank(zoo, "builtin:digits", protocol="lora", grid={"lr": [1e-3], "target_modules": ["nope"]})
    with pytest.raises(TransferlabError, match="partial: no option 'blokcs' \\(did you mean 'blocks'"):
        bench_rank(zoo, "builtin:digits", protocol="partial", grid={"lr": [1e-3], "blokcs": [1]})
    with pytest.raises(TransferlabError, match="patience must be a whole number"):
        bench_rank(zoo, "builtin:digits", protocol="finetune", patience=0)


def test_best_keeps_per_cell_the_protocol_with_the_best_validation_accuracy(tiny_zoo, tmp_path):
    _, refs = tiny_zoo
    cell = ground_truth_cell(refs[0], "builtin:digits", "best", limit=80, seed=0, cache_root=str(tmp_path),
                             options={"image_size": 32, "epochs": 1, "patience": 1},
                             grid={p: {"lr": [1e-3]} for p in ("finetune", "lora", "partial")})
    assert set(cell["runs"]) == {"linear_probe", "finetune", "lora", "partial"}
    vals = {p: run["val_accuracy"] for p, run in cell["runs"].items()}
    assert vals[cell["chosen_protocol"]] == max(vals.values())
    assert cell["test_accuracy"] == cell["runs"][cell["chosen_protocol"]]["test_accuracy"]


def test_accuracy_intervals_and_overlap():
    rng = np.random.default_rng(0)
    small = {"a": rng.random(40) < 0.80, "b": rng.random(40) < 0.85, "c": rng.random(40) < 0.75}
    assert overlap_fraction(accuracy_intervals(small, n_boot=300)) == 1.0  # 40 examples cannot separate them
    big = {"a": rng.random(5000) < 0.5, "b": rng.random(5000) < 0.7, "c": rng.random(5000) < 0.9}
    iv = accuracy_intervals(big, n_boot=300)
    assert overlap_fraction(iv) == 0.0
    for m, c in big.items():
        lo, hi = iv[m]
        assert lo < c.mean() < hi and hi - lo < 0.04  # about ±1.96·sqrt(p(1-p)/n) = ±0.013 at n = 5000


def test_checks_warn_about_a_test_split_too_small_and_ties():
    rng = np.random.default_rng(1)
    cells = []
    for m, p in (("a", 0.8), ("b", 0.82), ("c", 0.78)):
        c = rng.random(40) < p
        cells.append({"target": "t", "model": m, "test_accuracy": float(c.mean()), "correct": pack_correct(c),
                      "n_test": 40, "probe_accuracy": 0.5, "chosen_protocol": "finetune"})
    tie = dict(cells[0], model="d", lr_at_grid_edge="highest")
    out = ground_truth_checks([*cells, tie], {"a": "Model A", "d": "Model D"}, n_boot=200)
    assert out["grid_edge"] == [{"target": "t", "model": "d", "edge": "highest"}]
    assert any(w.startswith("1 cell(s) chose the grid's highest learning rate") for w in out["warnings"])
    assert out["targets"]["t"]["overlap_fraction"] == 1.0
    assert any(w.startswith("t: the test split (40 examples) is too small to separate the models") for w in
               out["warnings"])
    assert out["targets"]["t"]["ties"] == [["a", "d"]]
    assert any("2 models tie at accuracy" in w and "Model A, Model D" in w for w in out["warnings"])


def test_checks_with_replicates_use_the_replicates_mean():
    """With replicates, a model's interval is that of its mean over the replicates (the number bench rank shows),
    not replicate 0's; its flags are counted once (replicate 0's)."""
    rng = np.random.default_rng(2)
    r0, r1 = rng.random(2000) < 0.9, rng.random(2000) < 0.5  # replicate 0 ~0.9, replicate 1 ~0.5: mean ~0.7
    base = {"target": "t", "model": "a", "n_test": 2000, "probe_accuracy": 0.99, "chosen_protocol": "finetune",
            "under_trained": True}
    cells = [{**base, "test_accuracy": float(r0.mean()), "correct": pack_correct(r0)},
             {**base, "replicate": 1, "test_accuracy": float(r1.mean()), "correct": pack_correct(r1)}]
    out = ground_truth_checks(cells, {}, n_boot=300)
    lo, hi = out["targets"]["t"]["intervals"]["a"]
    mean = (r0.mean() + r1.mean()) / 2
    assert lo < mean < hi and hi < r0.mean()  # replicate 0's interval would sit around 0.9
    assert len(out["under_trained"]) == 1
