"""``adapt`` and ``transferlab domain`` on a tiny model: every method trains on the one loop with paired streams, the
output is an ordinary model directory, every selector scores every epoch and the kept epoch is the selector's pick,
target labels never reach training or selection, and bad input is one clear error before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transferlab.data import Dataset, load_dataset
from transferlab.domain import adapt, list_methods, list_selectors
from transferlab.errors import TransferlabError


@pytest.fixture(scope="module")
def shift():
    src = load_dataset("builtin:digits").stratified_sample(60, seed=0)
    tgt = load_dataset("builtin:digits-m").stratified_sample(40, seed=0)
    test = load_dataset("builtin:digits-m", "test").stratified_sample(30, seed=0)
    return src, tgt, test


KW = dict(epochs=2, image_size=32, batch_size=8, bottleneck=16)


def test_registries():
    assert list_methods() == ["aad", "cdan", "cdan_e", "dann", "mcc", "nrc", "shot", "source_only"]
    assert list_selectors() == ["dev", "entropy", "guarded", "im", "snd", "source_val", "transfer_score"]


def test_dann_end_to_end_writes_a_model_that_loads_and_predicts(shift, tiny_model_ref, tmp_path):
    from transferlab.models import ImageTensors, load, read_card

    src, tgt, test = shift
    r = adapt(src, tgt, tiny_model_ref, "dann", target_test=test, out=tmp_path / "m", hidden=32,
              select="transfer_score", **KW)
    m = r.metrics
    rows = r.history
    assert len(rows) == 2 and all("transfer_score.hopkins" in row and "oracle_accuracy" in row for row in rows)
    assert all(np.isfinite(row["train_transfer_loss"]) and 0 <= row["train_domain_accuracy"] <= 1 for row in rows)
    best = max(range(2), key=lambda i: (rows[i]["transfer_score"], -i)) + 1
    assert m["selected_epoch"] == best == m["picks"]["transfer_score"]["epoch"]
    assert set(m["picks"]) == set(list_selectors())
    assert m["target_accuracy_oracle"] == rows[best - 1]["oracle_accuracy"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        ".transferlab-output.json", "metrics.json", "model.safetensors", "report.html", "transferlab.json"]
    card = read_card(tmp_path / "m")
    assert card.structure["kind"] == "bottleneck_head" and card.method == "domain:dann"
    net = load(tmp_path / "m")
    x = torch.stack([ImageTensors(test, 32, tuple(card.mean), tuple(card.std))[i][0] for i in range(5)])
    r.model.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), r.model(x), atol=1e-5)
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["picks"] == json.loads(json.dumps(m["picks"])) and "oracle" in saved["oracle_note"]
    html = (tmp_path / "m" / "report.html").read_text()
    assert "What each selector would pick" in html and "never used" in html


def test_target_labels_never_reach_training_or_selection(shift, tiny_model_ref):
    """The same run with the target's labels scrambled gives the same network, bit for bit."""
    src, tgt, test = shift
    scrambled = Dataset(tgt.name, tgt.modality, tgt.items, np.random.default_rng(0).permutation(tgt.labels),
                        tgt.class_names, tgt.split)
    a = adapt(src, tgt, tiny_model_ref, "mcc", target_test=test, **KW)
    b = adapt(src, scrambled, tiny_model_ref, "mcc", target_test=test, **KW)
    for (k, v), (k2, v2) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
    assert [r["transfer_score"] for r in a.history] == [r["transfer_score"] for r in b.history]


def test_the_oracle_does_not_change_training(shift, tiny_model_ref):
    """Scoring an extra labelled target test set every epoch (the oracle column) leaves the trained network and every
    label-free score exactly as they are without it: the scores run in a forked random state."""
    src, tgt, test = shift
    a = adapt(src, tgt, tiny_model_ref, "mcc", target_test=test, **KW)
    b = adapt(src, tgt, tiny_model_ref, "mcc", **KW)
    for (k, v), (_, v2) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(v, v2), k
    assert [r["transfer_score"] for r in a.history] == [r["transfer_score"] for r in b.history]
    assert "oracle_accuracy" in a.history[-1] and "oracle_accuracy" not in b.history[-1]


@pytest.mark.parametrize("method", ["source_only", "cdan", "cdan_e"])
def test_every_method_trains(shift, tiny_model_ref, method):
    src, tgt, _ = shift
    small = {} if method == "source_only" else {"hidden": 32}  # the references' 1024 is slow for a unit test
    r = adapt(src, tgt, tiny_model_ref, method, **{**KW, "epochs": 1}, select="source_val", **small)
    row = r.history[0]
    assert np.isfinite(row["train_loss"]) and "oracle_accuracy" not in row  # no labelled target test: no oracle
    assert r.metrics["selected_epoch"] == 1 and r.metrics["target_accuracy_oracle"] is None
    if method == "source_only":
        assert "train_transfer_loss" not in row
    else:
        assert 0 <= row["train_domain_accuracy"] <= 1


def test_cdan_projects_at_random_beyond_4096_map_entries():
    from transferlab.domain._methods import METHODS

    small = METHODS.get("cdan")(16, 10)  # 160 entries: the exact multilinear map
    big = METHODS.get("cdan")(256, 31, hidden=8, randomized_dim=64)  # 7,936 entries: projected
    assert not small.modules["discriminator"].randomized and big.modules["discriminator"].randomized
    assert big.modules["discriminator"].projector.rf.shape == (256, 64)


def test_bad_input_is_one_clear_error(shift, tiny_model_ref, tmp_path):
    src, tgt, _ = shift
    shapes = load_dataset("builtin:shapes").stratified_sample(30, seed=0)
    texts = load_dataset("builtin:rotten-tomatoes").stratified_sample(30, seed=0)
    cases = [
        (dict(target=shapes), "same classes in the same order: only the source has 0, 1, 2"),
        (dict(target=texts), "holds image data, the target rotten-tomatoes text"),
        (dict(target=tgt.subset(np.arange(10))), "fewer than two batches of 8"),
        (dict(method="dan"), "unknown domain adaptation method 'dan'; known: aad, cdan, cdan_e, dann, mcc, nrc, shot, source_only"),
        (dict(select="oracle"), "unknown selector 'oracle'; known: dev, entropy"),
        (dict(trade_off=0.0), "trade_off must be a finite number > 0"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
        (dict(bottleneck=0), "bottleneck must be a whole number >= 1"),
        (dict(method="mcc", temprature=2.0), "no option 'temprature' \\(did you mean 'temperature'"),
    ]
    for kw, match in cases:
        args = {"source": src, "target": tgt, "model": tiny_model_ref, "method": "dann", **KW, **kw}
        with pytest.raises(TransferlabError, match=match):
            adapt(**args)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(TransferlabError, match="did not write"):
        adapt(src, tgt, tiny_model_ref, "dann", out=tmp_path / "x", overwrite=True, **KW)
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"


def test_domain_cli(tmp_path, tiny_model_ref, capsys):
    from transferlab.cli import main

    assert main(["domain", "--list"]) == 0
    assert "transfer_score" in capsys.readouterr().out
    assert main(["domain", "builtin:digits", "builtin:shapes", "-m", tiny_model_ref]) == 2
    assert "same classes" in capsys.readouterr().err


@pytest.mark.slow
def test_domain_cli_loads_pickle_weights_only_with_trust_pickle(tmp_path, capsys):
    """``domain --trust-pickle`` (issue 29: adapt() took trust_pickle, the command had no flag for it)."""
    import timm

    from transferlab.cli import main

    torch.manual_seed(0)
    weights = tmp_path / "weights.pt"
    torch.save(timm.create_model("test_efficientnet").state_dict(), weights)
    args = ["domain", "builtin:digits", "builtin:digits-m", "-m", f"timm:test_efficientnet@{weights}", "--epochs",
            "1", "--limit", "100", "--image-size", "32", "--batch-size", "16", "--out", str(tmp_path / "out"), "-q"]
    assert main(args) == 2
    assert "--trust-pickle" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main([*args, "--trust-pickle"]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


class _Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_network(shift, tiny_model_ref, tmp_path, monkeypatch):
    from transferlab.domain._objective import DomainAdaptation
    from transferlab.models import load

    src, tgt, test = shift
    kw = dict(target_test=test, hidden=32, **KW)
    ref = adapt(src, tgt, tiny_model_ref, "dann", out=tmp_path / "ref", **kw)
    step, calls = DomainAdaptation.step, {"n": 0}
    per_epoch = int(np.ceil(len(src.stratified_sample(54, seed=0)) / KW["batch_size"]))  # at least this many steps

    def killing_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == per_epoch + 2:  # in epoch 2
            raise _Killed
        return step(self, *a, **k)

    monkeypatch.setattr(DomainAdaptation, "step", killing_step)
    with pytest.raises(_Killed):
        adapt(src, tgt, tiny_model_ref, "dann", out=tmp_path / "run", **kw)
    monkeypatch.setattr(DomainAdaptation, "step", step)
    assert (tmp_path / "run" / "checkpoints").is_dir() and not (tmp_path / "run" / "transferlab.json").exists()
    with pytest.raises(TransferlabError, match="different training config"):  # other options: refused, not mixed
        adapt(src, tgt, tiny_model_ref, "dann", out=tmp_path / "run", **{**kw, "trade_off": 0.3})
    r = adapt(src, tgt, tiny_model_ref, "dann", out=tmp_path / "run", **kw)
    assert r.metrics["resumed_from_epoch"] == 1 and ref.metrics["resumed_from_epoch"] is None
    assert r.history == ref.history and r.metrics["picks"] == ref.metrics["picks"]
    assert not (tmp_path / "run" / "checkpoints").exists()  # the finished output holds no checkpoints
    for (k, a), b in zip(load(tmp_path / "ref").state_dict().items(), load(tmp_path / "run").state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(TransferlabError, match="already holds this adaptation"):
        adapt(src, tgt, tiny_model_ref, "dann", out=tmp_path / "run", **kw)


def test_a_grey_source_and_a_colour_target_are_noted(tmp_path):
    """Issue 29: a grey source and a colour target are noted in the metrics and the domain report."""
    from transferlab.data import load_dataset
    from transferlab.domain._api import _colour_warnings
    from transferlab.report import domain_report_html

    digits, digits_m = load_dataset("builtin:digits", "train"), load_dataset("builtin:digits-m", "train")
    (w,) = _colour_warnings(digits, digits_m)
    assert "greyscale and the target digits-m in colour" in w
    assert _colour_warnings(digits_m, digits_m) == [] and "in colour and the target" in _colour_warnings(digits_m,
                                                                                                        digits)[0]
    m = {"method": "dann", "model": "m", "source": "digits", "target": "digits-m", "n_source": 1, "n_source_val": 1,
         "n_target": 1, "trade_off": 1.0, "image_size": 32, "epochs": 1, "train_seconds": 1.0, "select": "entropy",
         "selected_epoch": 1, "target_accuracy_oracle": None, "picks": {}, "warnings": [w]}
    assert "greyscale and the target digits-m in colour" in domain_report_html(m)
