"""bench rank's replicates and learning-rate extension: replicate cells keyed apart (replicate 0 keeps the keys a
bench without replicates wrote), a cell at the grid's edge tries learning rates beyond it and is cached beside the
cell it extends, the replicates' mean is the ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferlab.bench._ground_truth import cell_key, ground_truth_cell, replicate_seed
from transferlab.bench._lr_extend import Extension, extended_cell, next_lr
from transferlab.bench._rank_truth import mean_accuracy, replicate_checks

_ID = {"ref": "builtin:x", "weights": "sha256:ab"}
_OPTS = {"epochs": 10, "grids": {"finetune": {"lr": [0.003]}}, "val_fraction": 0.1}


def test_replicate_keys_are_apart_and_replicate_0_keeps_the_keys_written_before_replicates():
    # the keys transferlab wrote before replicates existed (cell_key at 2e678ad), pinned: existing caches stay valid
    assert cell_key(_ID, "trfp", "tefp", "finetune", _OPTS, 0) == "b08fb793fab9c5d6da31cef16ca06b90"
    assert cell_key(_ID, "trfp", "tefp", "finetune", _OPTS, 3) == "67dcfccd8ca0bc38d1411a86b46d86cf"
    assert cell_key(_ID, "trfp", "tefp", "finetune", _OPTS, 0, replicate=0) == "b08fb793fab9c5d6da31cef16ca06b90"
    keys = {cell_key(_ID, "trfp", "tefp", "finetune", _OPTS, s, replicate=r) for s in (0, 3) for r in (0, 1, 2)}
    assert len(keys) == 6
    assert replicate_seed(0, 0) == 0 and len({replicate_seed(s, r) for s in (0, 1) for r in (0, 1, 2)}) == 6


def test_next_lr_continues_the_grids_outer_ratio():
    pts = [{"lr": 3e-3}, {"lr": 9e-4}, {"lr": 3e-4}]
    assert next_lr(pts, "highest") == 0.01
    assert next_lr(pts, "lowest") == 1e-4
    assert next_lr([*pts, {"lr": 0.01}], "highest") == 0.0333


def _cell(points: list[dict], chosen: int, protocol: str = "finetune") -> dict:
    run = {"protocol": protocol, "grid": points, "chosen": chosen, "test_accuracy": points[chosen]["test_accuracy"],
           "val_accuracy": points[chosen]["val_accuracy"], "lr_at_grid_edge": "highest", "train_seconds": 1.0}
    return {"format": 2, "model": "m", "target": "t", "protocol": protocol, "chosen_protocol": protocol,
            "test_accuracy": run["test_accuracy"], "val_accuracy": run["val_accuracy"], "correct": "OLD",
            "probe_accuracy": 0.5, "fallback": None, "under_trained": False, "converged": True,
            "lr_at_grid_edge": "highest", "seconds": 2.0, "train_seconds": 1.0, "n_train": 10, "n_test": 4,
            "runs": {"linear_probe": {"protocol": "linear_probe", "test_accuracy": 0.5, "val_accuracy": 0.5},
                     protocol: run}, "cached": True}


def _fake_fit(peak: float, calls: list):
    """fit_point on a known landscape: validation accuracy peaks at learning rate ``peak`` (log scale)."""
    def fit_point(model_ref, protocol, train, test, seed, options, point, trust_pickle):
        calls.append(dict(point))
        v = round(1.0 - 0.1 * abs(np.log10(point["lr"] / peak)), 6)
        rec = {**point, "val_accuracy": v, "test_accuracy": v - 0.05, "epochs_run": 3, "best_epoch": 2,
               "stopped_early": True, "seconds": 0.5}
        return rec, np.array([1, 1, 0, 0]) if v > 0.95 else np.zeros(4, int)
    return fit_point


def _points(lrs, peak):
    return [{"lr": lr, "head_lr_scale": 10.0, "val_accuracy": round(1.0 - 0.1 * abs(np.log10(lr / peak)), 6),
             "test_accuracy": round(1.0 - 0.1 * abs(np.log10(lr / peak)), 6) - 0.05, "epochs_run": 3,
             "best_epoch": 2, "stopped_early": True, "seconds": 0.5} for lr in lrs]


class _Test:
    labels = np.array([1, 1, 0, 0])


def test_a_cell_at_the_edge_extends_until_a_point_beyond_loses(monkeypatch, tmp_path):
    """Validation accuracy peaks at lr 0.01: from a grid whose best is 3e-3 (the edge), the cell tries 0.01 (wins),
    then 0.0333 (loses) and stops there with 0.01 interior, its predictions those of the 0.01 fit; cached beside."""
    calls: list = []
    monkeypatch.setattr("transferlab.bench._lr_extend.fit_point", _fake_fit(0.01, calls))
    base = _cell(_points([3e-3, 9e-4, 3e-4], 0.01), 0)
    x = Extension("m", None, _Test(), 0, {}, False, 2, tmp_path / "k-lr2.json")
    out = extended_cell(base, x)
    assert [c["lr"] for c in calls] == [0.01, 0.0333] and all(c["head_lr_scale"] == 10.0 for c in calls)
    run = out["runs"]["finetune"]
    assert run["grid"][run["chosen"]]["lr"] == 0.01 and run["extended_lrs"] == [0.01, 0.0333]
    assert out["lr_at_grid_edge"] is None and out["test_accuracy"] == pytest.approx(0.95)
    assert out["correct"] != "OLD" and out["lr_extension"] == {"finetune": [0.01, 0.0333]}
    assert not out["cached"] and json.loads((tmp_path / "k-lr2.json").read_text())["test_accuracy"] == out["test_accuracy"]
    calls.clear()
    again = extended_cell(base, x)
    assert calls == [] and again["cached"] and again["test_accuracy"] == out["test_accuracy"]


def test_an_extension_that_loses_at_once_keeps_the_cell_and_caps_at_steps(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setattr("transferlab.bench._lr_extend.fit_point", _fake_fit(3e-3, calls))
    out = extended_cell(_cell(_points([3e-3, 9e-4, 3e-4], 3e-3), 0),
                        Extension("m", None, _Test(), 0, {}, False, 2, tmp_path / "a.json"))
    assert [c["lr"] for c in calls] == [0.01] and out["correct"] == "OLD" and out["lr_at_grid_edge"] is None
    calls.clear()  # a peak far beyond: every step wins, the cell stays at the (extended) edge after `steps`
    monkeypatch.setattr("transferlab.bench._lr_extend.fit_point", _fake_fit(1.0, calls))
    out = extended_cell(_cell(_points([3e-3, 9e-4, 3e-4], 1.0), 0),
                        Extension("m", None, _Test(), 0, {}, False, 2, tmp_path / "b.json"))
    assert [c["lr"] for c in calls] == [0.01, 0.0333] and out["lr_at_grid_edge"] == "highest"


def test_replicates_mean_and_checks():
    reps = [{"t": {"a": 0.5, "b": 0.7}}, {"t": {"a": 0.7, "b": None}}]
    assert mean_accuracy(reps) == {"t": {"a": pytest.approx(0.6), "b": None}}
    cells = [{"target": "t", "model": "a", "test_accuracy": 0.5, "chosen_protocol": "finetune",
              "lr_at_grid_edge": "highest"},
             {"target": "t", "model": "a", "test_accuracy": 0.7, "chosen_protocol": "finetune", "replicate": 1,
              "lr_at_grid_edge": None},
             {"target": "t", "model": "p", "test_accuracy": 0.4, "chosen_protocol": "linear_probe"}]
    c = replicate_checks(cells, 2)
    assert (c["trained_cells"], c["lr_at_grid_edge"], c["largest_spread"]) == (2, 1, pytest.approx(0.2))


def test_a_replicate_cell_is_another_fit_of_the_same_sample(tiny_zoo, tmp_path):
    _, refs = tiny_zoo
    kw = dict(limit=60, seed=0, cache_root=str(tmp_path), options={"image_size": 32, "epochs": 1, "patience": 1},
              grid={"finetune": {"lr": [3e-3]}})
    c0 = ground_truth_cell(refs[0], "builtin:digits", "finetune", **kw)
    c1 = ground_truth_cell(refs[0], "builtin:digits", "finetune", replicate=1, **kw)
    assert "replicate" not in c0 and c1["replicate"] == 1 and c0["n_train"] == c1["n_train"] == 60
    assert len(list((tmp_path / "ground_truth").glob("*.json"))) == 2
    assert ground_truth_cell(refs[0], "builtin:digits", "finetune", replicate=1, **kw)["cached"]
