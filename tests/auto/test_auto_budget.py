"""``transferlab auto``'s budget: the calibration shows what it measures while it runs and its seconds count against
the plan; a budget no machine could keep is refused before calibrating; the probe fits measure an epoch in steady
state on batches like the real fit's (fixed and first-call costs cancel; texts in whole length-sorted batches);
transformers' per-load bars stay out of auto's output; the distillation starts from a copy of the better fit."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest
from tests.conftest import make_text_dataset, write_image_folder

from transferlab.auto import _costs as C
from transferlab.auto import _plan as P
from transferlab.auto import auto
from transferlab.auto._ledger import Ledger
from transferlab.auto._planning import Costing, _make_plan
from transferlab.data import Dataset
from transferlab.errors import TransferlabError

ZOO = "builtin:small_resnet_shapes,builtin:small_convnext_textures,builtin:pixels"


@pytest.mark.slow
def test_calibration_shows_what_it_measures_and_counts_in_the_plan(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TRANSFERLAB_PROGRESS_SECONDS", "0")  # a pipe: a plain line at every step
    data = write_image_folder(tmp_path / "data", n_per_class=20)
    lines: list[str] = []
    r = auto(str(data), ZOO, budget="5m", image_size=32, dry_run=True, progress=True, say=lines.append)
    err = capfd.readouterr().err
    assert re.search(r"^calibrate: \d+.*probe ranking 2/3 \(3 models on \d+ examples\)", err, re.M), err
    assert re.search(r"^calibrate: .*probe fit 3/3 of builtin:\w+ \(partial, [2-5] epochs on \d+ examples\)", err, re.M)
    cal = r.plan.stage("calibrate")
    assert cal.measured == cal.estimate > 0  # what the calibration spent is part of the plan's total
    assert r.plan.estimate >= cal.measured + r.plan.stage("fit 1").estimate
    assert any(line.startswith(f"calibrated in {P.fmt_seconds(cal.measured)}") for line in lines)


def _plan_with_slow_calibration(monkeypatch, cands, spent):
    """A plan whose missing fit costs take ``spent`` seconds of the budget's clock to measure."""
    train = Dataset("t", "image", np.zeros((1000, 8, 8, 3), np.uint8), np.repeat(np.arange(4), 250), tuple("abcd"))
    rank = C.RankCost(load={"m": 1.0, "n": 1.0}, forward={"m": 0.001, "n": 0.001}, metrics={"m": 1.0, "n": 1.0},
                      cached={}, probe_order=["m", "n"], n_probe=128)
    partial = C.FitCost(5.0, 0.01, 0.002, 10**6)
    run = Ledger(None, {}, 900.0, lambda *_: None)

    def probe_fits(train, ref, method, image_size, seed, step=None):
        run.t0 -= spent  # the probe fits' seconds, on the run's clock
        return partial

    monkeypatch.setattr(C, "fit_cost", probe_fits)
    costs = {"m|linear_probe": C.FitCost(4.0, 0.001, 0.001, 0), "n|linear_probe": C.FitCost(4.0, 0.001, 0.001, 0)}
    return _make_plan(run, Costing(train, None, rank, costs, None, 0), 500, cands, 0.0), rank, partial


def test_the_probe_fits_seconds_count_against_the_budget(monkeypatch):
    plan, rank, _ = _plan_with_slow_calibration(monkeypatch, ["m"], 100.0)
    left = 900.0 - 100.0 - rank.estimate(500) - P.RESERVE_SHARE * 900.0  # what the fit may take after them
    assert plan.stage("fit 1").options["budget_seconds"] == pytest.approx(left, abs=0.5)
    # the runner-up's probe fits run after the first fit's estimate: its time is read again
    plan, rank, partial = _plan_with_slow_calibration(monkeypatch, ["m", "n"], 100.0)
    assert plan.stage("fit 2") is not None
    left = 900.0 - 200.0 - rank.estimate(500) - P.RESERVE_SHARE * 900.0
    later = sum(plan.stage(n).estimate for n in ("fit 2", "ensemble", "distill"))
    assert plan.stage("fit 1").options["budget_seconds"] == pytest.approx(left - later, abs=0.5)


def test_a_budget_no_machine_could_keep_is_refused_before_calibrating(tmp_path, monkeypatch, capsys):
    from transferlab.cli import main

    data = write_image_folder(tmp_path / "data", n_per_class=12)
    monkeypatch.setattr(C, "rank_cost", lambda *a, **k: pytest.fail("calibrated before refusing"))
    with pytest.raises(TransferlabError, match=r"a budget of 0\.1 s is too small for even the cheapest plan "
                       r"\(calibrate, rank 3 models, a linear probe\): it needs at least 0\.\d s on any machine; "
                       r"give --budget 1s or more"):
        auto(str(data), ZOO, budget="0.1s", image_size=32, dry_run=True)
    assert main(["auto", str(data), "--zoo", ZOO, "--budget", "0.1s", "--dry-run"]) == 2
    assert "too small for even the cheapest plan" in capsys.readouterr().err
    # more models and more data need more; a budget that could fit is never refused (tests/auto/test_auto.py
    # checks the bound against a real run's measured stages)
    assert P.floor_seconds(14, 60_000, 10_000) > P.floor_seconds(3, 30, 6) > 0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_probe_fits_cancel_fixed_and_first_call_costs(monkeypatch):
    """A fake fit with known costs: set-up 1.5 s, 0.3 s before training, a time per example and epoch, 4 ms per test
    example, and 2 s the first time a batch shape trains (the former probes at 64 and 192 examples put it on one of
    two sizes; on a small split they differed by a fraction of a batch)."""
    clock, shapes, epochs_run = _Clock(), set(), []

    def fake_fit(ds, model, method, *, test=None, epochs=1, **kw):
        batches = {min(len(ds), C.FIT_BATCH), len(ds) % C.FIT_BATCH} - {0}
        first = 2.0 * len(batches - shapes)
        shapes.update(batches)
        train = 0.3 + first + epochs * len(ds) * per
        clock.now += 1.5 + train + (len(test) * 0.004 if test is not None else 0.0)
        epochs_run.append(epochs)
        return types.SimpleNamespace(metrics={"train_seconds": train, "total_params": 1234})

    monkeypatch.setattr(C, "time", clock)
    monkeypatch.setattr("transferlab.fit.fit", fake_fit)
    rng = np.random.default_rng(0)
    # a split smaller than the probe sample, a larger one, and a fast model (its epoch well under PROBE_SECONDS)
    for n, per, last in ((72, 0.01, 3), (900, 0.01, 3), (900, 0.0005, 1 + C.PROBE_MAX_EXTRA)):
        shapes.clear()
        train = Dataset("t", "image", rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 3,
                        ("a", "b", "c"))
        c = C.fit_cost(train, "m", "partial", None, 0)
        assert epochs_run[-3:] == [1, 1, last]
        assert c.train_per_example == pytest.approx(per) and c.eval_per_example == pytest.approx(0.004)
        assert c.setup == pytest.approx(1.8) and c.params == 1234
        assert c.estimate(900, 100, 300, 5) - c.estimate(900, 100, 300, 4) == pytest.approx(900 * per + 100 * 0.004)


def _padded_per_text(lengths: np.ndarray, batch: int = C.FIT_BATCH) -> float:
    """Padded tokens per text when the texts are sorted by length and cut into batches (the loop's grouping)."""
    s = np.sort(lengths)[::-1]
    return sum(len(b) * int(b.max()) for b in (s[i:i + batch] for i in range(0, len(s), batch))) / len(s)


def test_text_probe_fits_train_on_batches_like_the_real_fits(tiny_text_ref, tiny_text_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_text_model_dir))
    train = make_text_dataset(n_per_class=200)

    def lengths(ds):
        return np.array([len(tok(t, truncation=True, max_length=C.FIT_MAX_LENGTH)["input_ids"]) for t in ds.items])

    sample, scale = C.probe_sample(train, tiny_text_ref, seed=0)
    assert len(sample) == C.PROBE_BATCHES * C.FIT_BATCH and len(set(sample.labels)) > 1
    whole, probe = _padded_per_text(lengths(train)), _padded_per_text(lengths(sample))
    stratified = _padded_per_text(lengths(train.stratified_sample(len(sample), seed=0)))
    assert stratified / whole > 1.05  # a sample of its own pads more than the real fit does
    assert abs(probe / whole - 1) < 0.03 and scale == pytest.approx(whole / probe, rel=0.02)
    images = Dataset("i", "image", np.zeros((600, 8, 8, 3), np.uint8), np.arange(600) % 3, ("a", "b", "c"))
    assert C.probe_sample(images, "m", 0)[1] == 1.0 and len(C.probe_sample(images, "m", 0)[0]) == 128


def test_transformers_load_bars_are_quiet_in_auto_and_restored_after(tiny_text_model_dir, capfd):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from transferlab.auto._ledger import quiet_transformers

    before = (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity())
    AutoModel.from_pretrained(str(tiny_text_model_dir))
    assert "Loading weights" in capfd.readouterr().err  # what each load prints otherwise
    with quiet_transformers():
        AutoModel.from_pretrained(str(tiny_text_model_dir))
    assert "Loading weights" not in capfd.readouterr().err
    assert (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()) == before


@pytest.mark.slow
def test_the_distillation_starts_from_a_copy_of_the_better_fit(tmp_path):
    """distill refuses a student that is also a teacher: auto's distill stage (the ensemble of fit 1 and fit 2
    into the better of them) failed whenever the ensemble gained enough to run it."""
    from transferlab.auto._stages import stage_distill
    from transferlab.fit import fit

    data = write_image_folder(tmp_path / "data", n_per_class=12)
    work = tmp_path / "run"
    fits = {}
    for k, ref in ((1, "builtin:small_resnet_shapes"), (2, "builtin:small_convnext_textures")):
        fit(str(data), ref, "partial", epochs=1, out=work / "work" / f"fit-{k}", image_size=32)
        fits[f"fit {k}"] = {"dir": f"work/fit-{k}", "model": ref, "method": "partial"}
    run = Ledger(work, {}, 600.0, lambda *_: None)
    res = stage_distill(run, P.Stage("distill", 10.0, "distil"), str(data), None, fits, "fit 2", 32, 0, False)
    assert res["model"] == "builtin:small_convnext_textures" and res["val_accuracy"] is not None
    assert (work / "work" / "distill" / "transferlab.json").is_file()
    assert run.done("distill")["result"] == res
