"""Source-free adaptation (``adapt(None, target, method, source_model=...)``): each loss against a hand computation
in NumPy on fixed tensors, SHOT's pseudo-labels on features where the answer is known, and shot / nrc / aad end to
end from a saved source model (a domain ``source_only`` output with a bottleneck head, and a ``fit`` output with a
plain linear head), with the source-needing selectors skipped and source-free misuse refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from transferlab.data import load_dataset
from transferlab.domain import METHODS, adapt
from transferlab.domain._losses import (
    aad_coefficient,
    aad_loss,
    information_maximisation_loss,
    nrc_loss,
    shot_loss,
    shot_pseudo_labels,
    update_banks_,
)
from transferlab.errors import TransferlabError

EPS = 1e-5
SOURCE_FREE = [m for m in METHODS.list() if METHODS.meta(m).get("source_free")]


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _h(p):
    return -(p * np.log(p + EPS)).sum(-1)


def _fixed(n=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)) * 2


def test_the_registry_marks_the_source_free_methods():
    assert SOURCE_FREE == ["aad", "nrc", "shot"]


def test_information_maximisation_and_shot_loss_by_hand():
    z = _fixed()
    p = _softmax(z)
    im = _h(p).mean() - _h(p.mean(0))
    assert float(information_maximisation_loss(torch.tensor(z))) == pytest.approx(im, rel=1e-9)
    y = np.array([0, 2, 1, 1])
    ce = -np.mean(np.log(p[np.arange(4), y]))
    got = shot_loss(torch.tensor(z), torch.tensor(y), 0.3)
    assert float(got) == pytest.approx(im + 0.3 * ce, rel=1e-9)
    assert float(shot_loss(torch.tensor(z), None)) == pytest.approx(im, rel=1e-9)  # SHOT-IM


def test_shot_pseudo_labels_follow_the_feature_clusters_not_the_wrong_predictions():
    """Two tight clusters in feature space; the classifier calls one point of cluster A class 1: the centroids (one
    refinement) give it back to class 0. A class no current label names gets no centroid."""
    a = np.array([[1.0, 0.0], [0.98, 0.05], [0.97, -0.05], [0.99, 0.02]])
    b = np.array([[0.0, 1.0], [0.05, 0.98], [-0.04, 0.97]])
    feats = np.vstack([a, b])
    probs = np.array([[.9, .05, .05], [.8, .15, .05], [.8, .1, .1], [.3, .6, .1],
                      [.1, .85, .05], [.05, .9, .05], [.1, .8, .1]])
    assert list(shot_pseudo_labels(probs, feats)) == [0, 0, 0, 0, 1, 1, 1]
    # class 2 never predicted: with threshold 0 it has no centroid, so no example is labelled 2
    assert 2 not in shot_pseudo_labels(probs, feats)


def _banks(n=8, d=3, k=3, seed=1):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, d))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    s = _softmax(rng.standard_normal((n, k)) * 2)
    return f, s


def _knn(q, bank, k):
    """Hand k nearest by cosine, the most similar (itself) left out."""
    return np.argsort(-(q @ bank.T), axis=-1, kind="stable")[..., 1:k + 1]


def test_nrc_loss_by_hand():
    f, s = _banks()
    z_raw = np.random.default_rng(2).standard_normal((3, 3))
    logits = np.random.default_rng(3).standard_normal((3, 3))
    idx = np.array([1, 4, 6])
    fb, sb = torch.tensor(f), torch.tensor(s)
    p_t = torch.softmax(torch.tensor(logits), 1)
    z = update_banks_(torch.tensor(z_raw), p_t, torch.tensor(idx), fb, sb)
    got = float(nrc_loss(p_t, z, torch.tensor(idx), fb, sb, k=2, kk=2, weak=0.1))
    # by hand: banks after the batch's write
    zn = z_raw / np.linalg.norm(z_raw, axis=1, keepdims=True)
    f2, s2 = f.copy(), s.copy()
    f2[idx], s2[idx] = zn, _softmax(logits)
    p = _softmax(logits)
    total = 0.0
    for b, i in enumerate(idx):
        for j in _knn(zn[b], f2, 2):
            nn_j = _knn(f2[j], f2, 2)
            a = 1.0 if i in nn_j else 0.1
            total -= a * p[b] @ s2[j]
            total -= sum(0.1 * p[b] @ s2[m] for m in nn_j)
    mean = p.mean(0)
    expected = total / len(idx) + float((mean * np.log(mean + EPS)).sum())
    assert got == pytest.approx(expected, rel=1e-9)
    assert np.allclose(fb.numpy(), f2) and np.allclose(sb.numpy(), s2)  # the banks were updated in place


def test_nrc_reciprocal_neighbours_weigh_one_others_a_tenth():
    """Points 0 and 1 are each other's nearest; point 2 has 0 as its nearest but is not 0's: its pull from 0 is 0.1.
    Every banked score is class 0 and so is the prediction: each affinity adds −weight; the expanded neighbour (0's
    nearest, 1) −0.1; the diversity of one certain prediction is log(1 + 1e-5)."""
    f = np.array([[1.0, 0.0], [0.99, 0.14], [0.8, -0.6], [-1.0, 0.0]])
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    s = np.array([[1.0, 0.0]] * 4)
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    for i, expected in ((1, -1.0 - 0.1), (2, -0.1 - 0.1)):
        got = nrc_loss(p, torch.tensor(f[[i]]), torch.tensor([i]), torch.tensor(f), torch.tensor(s), k=1, kk=1)
        assert float(got) == pytest.approx(expected + math.log(1 + EPS), abs=1e-12)


def test_aad_loss_and_its_schedule_by_hand():
    assert aad_coefficient(0.0) == 1.0 and aad_coefficient(1.0) == pytest.approx(11.0 ** -5)
    assert aad_coefficient(0.5, alpha=2.0, beta=1.0) == pytest.approx(2.0 / 6.0)
    f, s = _banks()
    rng = np.random.default_rng(4)
    z_raw, logits, idx = rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), np.array([0, 3, 7])
    fb, sb = torch.tensor(f), torch.tensor(s)
    p_t = torch.softmax(torch.tensor(logits), 1)
    z = update_banks_(torch.tensor(z_raw), p_t, torch.tensor(idx), fb, sb)
    got = float(aad_loss(p_t, z, fb, sb, k=2, coeff=0.7))
    zn = z_raw / np.linalg.norm(z_raw, axis=1, keepdims=True)
    f2, s2 = f.copy(), s.copy()
    f2[idx], s2[idx] = zn, _softmax(logits)
    p = _softmax(logits)
    attract = np.mean([sum(p[b] @ s2[j] for j in _knn(zn[b], f2, 2)) for b in range(3)])
    disperse = np.mean([sum(p[b] @ p[c] for c in range(3) if c != b) for b in range(3)])
    assert got == pytest.approx(-attract + 0.7 * disperse, rel=1e-9)


# -- end to end ----------------------------------------------------------------------------------------------------

KW = dict(epochs=1, image_size=32, batch_size=8)


@pytest.fixture(scope="module")
def target():
    tgt = load_dataset("builtin:digits-m").stratified_sample(40, seed=0)
    test = load_dataset("builtin:digits-m", "test").stratified_sample(30, seed=0)
    return tgt, test


@pytest.fixture(scope="module")
def source_model(tmp_path_factory, tiny_timm_weights):
    """A domain source_only output (bottleneck head) trained one epoch on a digits sample."""
    out = tmp_path_factory.mktemp("src") / "source"
    src = load_dataset("builtin:digits").stratified_sample(60, seed=0)
    tgt = load_dataset("builtin:digits-m").stratified_sample(40, seed=0)
    adapt(src, tgt, f"timm:test_efficientnet@{tiny_timm_weights}", "source_only", out=out, bottleneck=16,
          select="source_val", **KW)
    return out


@pytest.mark.parametrize("name", SOURCE_FREE)
def test_source_free_method_adapts_a_saved_source_model(name, target, source_model, tmp_path):
    from transferlab.models import load, read_card

    tgt, test = target
    before = load(source_model)
    fc_before = before.get_classifier().fc.weight.detach().clone()
    r = adapt(None, tgt, method=name, source_model=source_model, target_test=test, out=tmp_path / "m",
              select="im", **KW)
    m = r.metrics
    assert m["source_free"] and m["source"] is None and len(r.history) == 1
    assert math.isfinite(r.history[0]["train_loss"]) and "oracle_accuracy" in r.history[0]
    assert {"entropy", "im", "snd", "transfer_score"} <= set(m["picks"]) <= {"entropy", "im", "snd",
                                                                             "transfer_score", "guarded"}
    assert set(m["skipped_selectors"]) == {"source_val", "dev"}
    fc_after = r.model.get_classifier().fc.weight.detach()
    assert torch.equal(fc_before, fc_after) == (name == "shot")  # SHOT freezes the classifier; NRC, AaD train it
    card = read_card(tmp_path / "m")
    assert card.method == f"domain:{name}" and card.structure["kind"] == "bottleneck_head"
    assert card.interpolation == read_card(source_model).interpolation == "bicubic"  # adapted on the source's inputs
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())["source_model"]  # relative to the output
    assert (tmp_path / "m" / saved).resolve() == source_model.resolve()
    net = load(tmp_path / "m")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), r.model.eval()(x), atol=1e-5)


def test_shot_from_a_fit_output_with_a_plain_linear_head(target, tiny_model_ref, tmp_path):
    from transferlab.fit import fit

    tgt, _ = target
    src = load_dataset("builtin:digits").stratified_sample(60, seed=0)
    fit(src, tiny_model_ref, "finetune", out=tmp_path / "fit", epochs=1, image_size=32, batch_size=8)
    r = adapt(None, tgt, method="shot", source_model=tmp_path / "fit", select="entropy", pseudo_labels=False, **KW)
    assert r.metrics["options"] == {"pseudo_labels": False} and math.isfinite(r.history[0]["train_loss"])
    assert "train_pseudo_agreement" not in r.history[0]  # SHOT-IM: no pseudo-labels


def test_source_free_misuse_is_one_clear_error(target, source_model, tiny_model_ref):
    tgt, _ = target
    src = load_dataset("builtin:digits").stratified_sample(60, seed=0)
    with pytest.raises(TransferlabError, match="needs source data; with source_model"):
        adapt(None, tgt, method="dann", source_model=source_model, **KW)
    with pytest.raises(TransferlabError, match="needs a labelled source hold-out"):
        adapt(None, tgt, method="shot", source_model=source_model, select="source_val", **KW)
    with pytest.raises(TransferlabError, match="no source dataset and no model"):
        adapt(src, tgt, method="shot", source_model=source_model, **KW)
    with pytest.raises(TransferlabError, match="shot is source-free"):
        adapt(src, tgt, tiny_model_ref, "shot", **KW)
    shapes = load_dataset("builtin:shapes").stratified_sample(40, seed=0)
    with pytest.raises(TransferlabError, match="same classes"):
        adapt(None, shapes, method="shot", source_model=source_model, **KW)


def test_domain_cli_source_free(target, source_model, tmp_path, capsys):
    from typer.testing import CliRunner

    from transferlab.cli import app

    r = CliRunner().invoke(app, ["domain", "--source-model", str(source_model), "builtin:digits-m", "--method",
                                 "aad", "--limit", "40", "--epochs", "1", "--image-size", "32", "--batch-size", "8",
                                 "--select", "entropy", "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    assert "source-free" in r.output and (tmp_path / "o" / "metrics.json").is_file()


class _Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["nrc"])  # SHOT's pseudo-labels resume by the same Method.state
def test_killed_source_free_run_resumes_with_its_banks_and_pseudo_labels(name, target, source_model, tmp_path,
                                                                         monkeypatch):
    """Killed in epoch 2 and rerun: the same final weights and history as an uninterrupted run (NRC's banks and
    SHOT's pseudo-labels come from the checkpoint, not from the source model)."""
    from transferlab.domain._objective import SourceFreeAdaptation
    from transferlab.models import load

    tgt, test = target
    kw = {**KW, "epochs": 2, "target_test": test, "source_model": source_model, "method": name}
    ref = adapt(None, tgt, out=tmp_path / "ref", **kw)
    step, calls = SourceFreeAdaptation.step, {"n": 0}

    def killing_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == len(tgt) // KW["batch_size"] + 2:  # in epoch 2
            raise _Killed
        return step(self, *a, **k)

    monkeypatch.setattr(SourceFreeAdaptation, "step", killing_step)
    with pytest.raises(_Killed):
        adapt(None, tgt, out=tmp_path / "run", **kw)
    monkeypatch.setattr(SourceFreeAdaptation, "step", step)
    r = adapt(None, tgt, out=tmp_path / "run", **kw)
    assert r.metrics["resumed_from_epoch"] == 1 and r.history == ref.history
    for (k, a), b in zip(load(tmp_path / "ref").state_dict().items(), load(tmp_path / "run").state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
