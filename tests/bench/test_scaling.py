"""``bench scaling``: the log law of Isik et al. (2024) is recovered from points drawn from it (parameters chosen here,
not computed by the code), the held-back prediction's error is what it should be, the grid is cached run by run and
resumes, the CLI writes bench_scaling.json and report.html, and bad input is one clear error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from transferlab.errors import TransferlabError

# the law's parameters, chosen: accuracy 0.42 at 250 examples, 0.79 at 4,000; beta not among the fit's starts
A, ALPHA, BETA = 1.4, 0.07, 2.7
SIZES = [250, 500, 1000, 2000, 4000]


def _law(d):
    return (math.log(A) + ALPHA * math.log(d)) ** BETA


def test_the_law_is_the_papers_form():
    from transferlab.bench import log_law

    assert log_law(1000, A, ALPHA, BETA) == pytest.approx(math.log(A * 1000 ** ALPHA) ** BETA, rel=1e-12)
    assert log_law(1000, A, ALPHA, BETA) == pytest.approx(0.5852, abs=1e-4)  # by hand: (0.3365 + 0.4835)^2.7
    assert np.isnan(log_law(10, 0.1, 0.1, 2.0))  # log(0.1 · 10^0.1) < 0: off the law's domain


def test_the_fit_recovers_known_parameters():
    from transferlab.bench import fit_log_law

    f = fit_log_law(SIZES, [_law(d) for d in SIZES])
    assert (f.a, f.alpha, f.beta) == pytest.approx((A, ALPHA, BETA), rel=1e-5)
    assert f.rmse < 1e-8 and f.n_points == 5 and f.n_sizes == 5
    # three seeds per size, seed noise of sd 0.005: the parameters come back near, the curve very near
    rng = np.random.default_rng(0)
    d = np.repeat(SIZES, 3)
    noisy = fit_log_law(d, [_law(x) + e for x, e in zip(d, rng.normal(0, 0.005, d.size), strict=True)])
    assert noisy.alpha == pytest.approx(ALPHA, rel=0.25) and noisy.beta == pytest.approx(BETA, rel=0.35)
    assert float(noisy.predict(4000)) == pytest.approx(_law(4000), abs=0.01)
    assert 0.002 < noisy.rmse < 0.008  # the residual is the noise's


def test_the_fit_refuses_what_the_law_cannot_fit():
    from transferlab.bench import fit_log_law

    with pytest.raises(TransferlabError, match="3 or more distinct sizes"):
        fit_log_law([100, 100, 200], [0.5, 0.5, 0.6])
    with pytest.raises(TransferlabError, match="value <= 0"):
        fit_log_law([100, 200, 400], [0.5, 0.0, 0.6])
    with pytest.raises(TransferlabError, match="pairs"):
        fit_log_law([100, 200, 400], [0.5, 0.6])


def _synthetic(offset: float):
    """A result whose runs lie on the law (three seeds: -0.01, 0, +0.01), the held-back size ``offset`` above it."""
    from transferlab.bench import ScalingBenchResult

    runs = [{"size": d, "finetune": 100, "seed": s, "test_accuracy": _law(d) + 0.01 * (s - 1)
             + (offset if d == 4000 else 0.0)} for d in SIZES for s in range(3)]
    pre = [{"size": d, "seed": s, "n_pretrain": d, "pretrain_seconds": d / 100, "source_accuracy": 90.0}
           for d in SIZES for s in range(3)]
    return ScalingBenchResult("builtin:mixed-source", "builtin:shapes", "resnet", SIZES, [100], [0, 1, 2], pre, runs,
                              {"pretrain_epochs": 10, "epochs": 10})


def test_the_held_back_prediction_error_is_reported():
    from transferlab.report import render_markdown, scaling_bench_html

    r = _synthetic(offset=0.03)  # the held-back size is 3 points above the law
    (f,) = r.fits()
    assert f["held_back_size"] == 4000 and f["n_measured"] == 3
    assert f["fit"]["n_points"] == 12 and f["fit"]["n_sizes"] == 4 and not f["fit"]["interpolates"]
    assert (f["fit"]["A"], f["fit"]["alpha"], f["fit"]["beta"]) == pytest.approx((A, ALPHA, BETA), rel=1e-4)
    assert f["predicted"] == pytest.approx(_law(4000), abs=1e-6)
    assert f["measured"] == pytest.approx(_law(4000) + 0.03) and f["measured_sd"] == pytest.approx(0.01)
    assert f["error"] == pytest.approx(-0.03, abs=1e-6)
    assert f["flat_error"] == pytest.approx(_law(2000) - _law(4000) - 0.03)  # no growth: 2,000's mean
    d = json.loads(json.dumps(r.to_dict()))  # what bench_scaling.json holds
    fit_table = next(t for t in r.tables() if t.name == "fit")
    assert "error (points)" in [c.label for c in fit_table.columns]
    md = render_markdown(fit_table)
    assert "| -3.0 |" in md and "off by -3.0 points (the seeds' sd there: 1.0)" in md
    assert "closer than the β = 1 line and no growth" in md  # the naive predictors miss by more
    html = scaling_bench_html(d)
    assert "<img" in html and "held back" in html and "off by -3.0 points" in html


def test_three_fitted_sizes_are_said_to_interpolate():
    from transferlab.bench import ScalingBenchResult

    r = _synthetic(offset=0.0)
    r4 = ScalingBenchResult(r.source, r.target, r.arch, SIZES[1:], r.finetune, r.seeds, r.pretraining,
                            [x for x in r.runs if x["size"] != 250], r.options)
    (f,) = r4.fits()
    assert f["fit"]["interpolates"] and f["fit"]["n_sizes"] == 3
    assert any("passes through their means" in n for t in r4.tables() for n in t.notes)


COLOURS = {"red": (210, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 210), "yellow": (210, 210, 20),
           "pink": (240, 60, 60), "orange": (240, 150, 30)}


def _folder(root, classes, n, seed):
    rng = np.random.default_rng(seed)
    for split, k in (("train", n), ("test", 4)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                a = np.clip(np.array(COLOURS[c])[None, None, :] + rng.integers(-20, 20, (12, 12, 3)), 0, 255)
                Image.fromarray(a.astype(np.uint8)).save(root / split / c / f"{i:02d}.png")
    return str(root)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("bs")
    return _folder(d / "source", ["red", "green", "blue", "yellow"], 16, 0), _folder(d / "target", ["pink", "orange"],
                                                                                    8, 1)


TINY = {"sizes": [8, 16, 32, 64], "finetune": [8], "seeds": [0], "pretrain_epochs": 1, "epochs": 1}


@pytest.mark.slow
def test_bench_scaling_runs_caches_and_resumes(sets, tmp_path, monkeypatch):
    from transferlab.bench import bench_scaling

    source, target = sets
    r = bench_scaling(out=tmp_path, source=source, target=target, **TINY)
    assert sorted(p["size"] for p in r.pretraining) == [8, 16, 32, 64]
    assert [p["n_pretrain"] for p in sorted(r.pretraining, key=lambda p: p["size"])] == [8, 16, 32, 64]
    assert sorted(x["size"] for x in r.runs) == [8, 16, 32, 64] and all(x["finetune"] == 8 for x in r.runs)
    assert len(list((tmp_path / "models").iterdir())) == 4
    (f,) = r.fits()
    assert f["held_back_size"] == 64 and f["measured"] == next(x["test_accuracy"] for x in r.runs if x["size"] == 64)
    # a rerun reads every record: nothing is pretrained or fitted again
    monkeypatch.setattr("transferlab.pretrain.pretrain", lambda *a, **k: pytest.fail("pretrained again"))
    monkeypatch.setattr("transferlab.fit.fit", lambda *a, **k: pytest.fail("fitted again"))
    assert bench_scaling(out=tmp_path, source=source, target=target, **TINY).runs == r.runs
    # a killed bench: one fine-tuning run's record is missing, and only that run is done again
    (victim,) = [p for p in (tmp_path / "runs").iterdir() if json.loads(p.read_text())["size"] == 16]
    victim.unlink()
    calls = []

    def fit_fails(*a, **k):
        calls.append(k["init"])
        raise RuntimeError("stopped here")

    monkeypatch.setattr("transferlab.fit.fit", fit_fails)
    with pytest.raises(TransferlabError, match=r"1 of 4 runs failed"):
        bench_scaling(out=tmp_path, source=source, target=target, **TINY)
    assert len(calls) == 1


@pytest.mark.slow
def test_the_cli_writes_bench_json_and_report(sets, tmp_path):
    from transferlab.cli import main

    source, target = sets
    out = tmp_path / "out"
    assert main(["bench", "scaling", "--source", source, "--target", target, "--sizes", "8,16,32,64", "--finetune",
                 "8", "--seeds", "0", "--pretrain-epochs", "1", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    d = json.loads((out / "bench_scaling.json").read_text())
    assert d["held_back_size"] == 64 and d["law"] == "(log(A · D^α))^β" and len(d["runs"]) == 4
    assert [t["name"] for t in d["tables"]] == ["accuracy", "fit"]
    assert "transferlab bench scaling" in (out / "report.html").read_text()


def test_bad_input_is_one_clear_error(sets, tmp_path):
    from transferlab.bench import bench_scaling

    source, target = sets
    with pytest.raises(TransferlabError, match="at least 4 pretraining sizes"):
        bench_scaling(out=tmp_path, source=source, target=target, sizes=[8, 16, 32])
    with pytest.raises(TransferlabError, match=r"pretraining sizes must lie in \[8, 64\]"):
        bench_scaling(out=tmp_path, source=source, target=target, sizes=[8, 16, 32, 100])
    with pytest.raises(TransferlabError, match="text data"):
        bench_scaling(out=tmp_path, source=source, target="builtin:rotten-tomatoes", sizes=[8, 16, 32, 64])
    with pytest.raises(TransferlabError, match="unknown architecture"):
        bench_scaling(out=tmp_path, source=source, target=target, arch="mlp", sizes=[8, 16, 32, 64])
    assert not any(tmp_path.iterdir())  # refused before any work


def test_a_pretrained_model_of_another_device_or_precision_has_its_own_folder(sets, tmp_path, monkeypatch):
    """A pretraining job's cached record is keyed by the device and precision asked for, its model folder was not: a
    bench on another device refitted into the same folder, under the first bench's cached records (H8's review, item
    1's pattern). Without a device or precision the folder keeps its name (existing caches stay valid)."""
    from transferlab.bench import _scaling

    models = {}

    def fake_run_jobs(jobs, *, bench, **kw):
        if bench == "scaling-pretrain":
            models[(kw.get("device"), kw.get("precision"))] = [j.kwargs["model"] for j in jobs]
        raise RuntimeError("stop")

    monkeypatch.setattr(_scaling, "run_jobs", fake_run_jobs)
    source, target = sets
    for device, precision in ((None, None), ("cpu", None), (None, "bf16")):
        with pytest.raises(RuntimeError, match="stop"):
            _scaling.bench_scaling(out=tmp_path, source=source, target=target, device=device, precision=precision,
                                   **TINY)
    plain, cpu, bf16 = models.values()
    assert not set(plain) & set(cpu) and not set(plain) & set(bf16) and not set(cpu) & set(bf16)
    import hashlib

    from transferlab.data import load_dataset

    pkey = {"source": load_dataset(source, "train").fingerprint, "arch": "resnet", "size": 8, "seed": 0, "pe": 1}
    name = hashlib.sha256(json.dumps(pkey, sort_keys=True).encode()).hexdigest()[:20]
    assert plain[0] == str(tmp_path / "models" / f"pre-resnet-{name}")
