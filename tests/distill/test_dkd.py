"""``dkd`` (Decoupled Knowledge Distillation) against an independent NumPy re-derivation of the paper's reference
formula, its warm-up, what it does with unlabelled examples, and one run through ``distill``.

The reference is megvii-research/mdistiller ``mdistiller/distillers/DKD.py`` @ e8c5bb331e78c9d79a8894ca233caae78531cf7f
(``dkd_loss``; ``DKD.forward_train``: CE + min(epoch / WARMUP, 1)·dkd_loss, epoch counted from 1). ``reference_dkd``
below follows its steps on NumPy arrays (softmax at T; the target's and the others' summed probabilities; log; KL
summed and divided by the batch; the target logit over T lowered by 1000 before the second softmax); no mdistiller
code is used."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.distill._data import colours

from transferlab.distill import METHODS, distill
from transferlab.distill._losses import dkd_terms
from transferlab.distill._methods import Step
from transferlab.errors import TransferlabError
from transferlab.train import StepContext


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _kl_sum(p: np.ndarray, log_q: np.ndarray) -> float:
    """Σ p·(log p − log q) with 0·log 0 = 0 (as torch's kl_div)."""
    safe = np.where(p > 0, p, 1.0)
    return float(np.sum(np.where(p > 0, p * (np.log(safe) - log_q), 0.0)))


def reference_dkd(zs: np.ndarray, zt: np.ndarray, target: np.ndarray, alpha: float, beta: float,
                  t: float) -> tuple[float, float, float]:
    """(α·TCKD + β·NCKD, TCKD, NCKD), each already × T², as the reference's ``dkd_loss`` computes them."""
    b = len(target)
    gt = np.zeros_like(zs, dtype=bool)
    gt[np.arange(b), target] = True
    ps, pt = _softmax(zs / t), _softmax(zt / t)
    bs = np.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1)
    tckd = _kl_sum(bt, np.log(bs)) * t ** 2 / b
    zs2, zt2 = zs / t - 1000.0 * gt, zt / t - 1000.0 * gt
    log_ps2 = zs2 - zs2.max(1, keepdims=True)
    log_ps2 = log_ps2 - np.log(np.exp(log_ps2).sum(1, keepdims=True))
    nckd = _kl_sum(_softmax(zt2), log_ps2) * t ** 2 / b
    return alpha * tckd + beta * nckd, tckd, nckd


def _ce(zs: np.ndarray, y: np.ndarray) -> float:
    z = zs - zs.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


RNG = np.random.default_rng(27)
ZS = RNG.normal(0, 3, (6, 5))
ZT = RNG.normal(0, 3, (6, 5))
ZT[0] = [12.0, -3.0, 0.5, 1.0, -8.0]  # a confident teacher (its non-target mass is small)
Y = np.array([0, 4, 2, 2, 1, 3])


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_dkd_terms_equal_the_reference_formula(t):
    tckd, nckd = dkd_terms(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), t)
    _, ref_t, ref_n = reference_dkd(ZS, ZT, Y, 1.0, 8.0, t)
    assert abs(float(tckd) - ref_t) <= 1e-6 and abs(float(nckd) - ref_n) <= 1e-6
    assert ref_t > 1e-3 and ref_n > 1e-3  # the vector exercises both terms
    same = dkd_terms(torch.tensor(ZT), torch.tensor(ZT), torch.tensor(Y), t)
    assert float(same[0]) == pytest.approx(0, abs=1e-12) and float(same[1]) == pytest.approx(0, abs=1e-12)


def _ctx(progress: float, epochs: int = 10) -> StepContext:
    return StepContext(epoch=int(progress * epochs), epochs=epochs, step=0, batch=0, progress=progress,
                       device="cpu", generator=None)


def _loss(y: np.ndarray, progress: float = 1.0, zs: np.ndarray = ZS, **options):
    method = METHODS.get("dkd")(1, **options)
    z = torch.tensor(zs, requires_grad=True)
    step = Step(z, z, [torch.tensor(ZT)], torch.tensor(y), [1.0], _ctx(progress))
    value, logs = method.loss(step, {})
    value.backward()
    return float(value.detach()), logs, z.grad


@pytest.mark.parametrize(("progress", "warmup", "ramp"), [(0.0, 1.0, 0.0), (0.05, 1.0, 0.5), (0.3, 1.0, 1.0),
                                                          (0.3, 20.0, 3 / 20), (0.0, 0.0, 1.0)])
def test_dkd_loss_is_ce_plus_the_warmed_up_terms(progress, warmup, ramp):
    """10 epochs: progress 0.05 is half an epoch done; the ramp is epochs done / ``warmup_epochs``, at most 1."""
    value, logs, _ = _loss(Y, progress, warmup_epochs=warmup)
    both, _, _ = reference_dkd(ZS, ZT, Y, 1.0, 8.0, 4.0)
    assert logs["warmup"] == pytest.approx(ramp, abs=1e-12)
    assert abs(value - (_ce(ZS, Y) + ramp * both)) <= 1e-6
    alpha_beta, _, _ = _loss(Y, 1.0, alpha=0.5, beta=2.0, temperature=2.0)
    assert abs(alpha_beta - (_ce(ZS, Y) + reference_dkd(ZS, ZT, Y, 0.5, 2.0, 2.0)[0])) <= 1e-6


def test_unlabelled_rows_take_no_part_unless_pseudo_labelled():
    y = Y.copy()
    y[[1, 4]] = -1
    keep = y >= 0
    value, logs, grad = _loss(y)
    both, tckd, _ = reference_dkd(ZS[keep], ZT[keep], y[keep], 1.0, 8.0, 4.0)
    assert abs(value - (_ce(ZS[keep], y[keep]) + both)) <= 1e-6  # the labelled rows' mean, not diluted
    assert logs["tckd"] == (pytest.approx(tckd * 4), 4)
    assert float(grad[[1, 4]].abs().max()) == 0.0 and float(grad[keep].abs().max()) > 0
    moved = ZS.copy()
    moved[[1, 4]] += RNG.normal(0, 5, (2, 5))
    assert _loss(y, zs=moved)[0] == pytest.approx(value, abs=1e-12)  # unlabelled rows cannot change it
    pseudo, _, grad = _loss(y, pseudo_labels=True)
    target = np.where(keep, y, ZT.argmax(1))
    assert abs(pseudo - (_ce(ZS[keep], y[keep]) + reference_dkd(ZS, ZT, target, 1.0, 8.0, 4.0)[0])) <= 1e-6
    assert float(grad[[1, 4]].abs().max()) > 0
    none, logs, grad = _loss(np.full(6, -1))
    assert none == 0.0 and "tckd" not in logs and float(grad.abs().max()) == 0.0


def test_dkd_options_are_checked():
    factory = METHODS.get("dkd")
    with pytest.raises(TransferlabError, match="beta must be a finite number >= 0"):
        factory(1, beta=-1.0)
    with pytest.raises(TransferlabError, match="warmup_epochs must be a finite number >= 0"):
        factory(1, warmup_epochs=math.nan)
    with pytest.raises(TransferlabError, match="dkd distils one teacher, got 2"):
        factory(2)
    assert "mdistiller" in METHODS.meta("dkd")["reference"] and "CVPR 2022" in METHODS.meta("dkd")["paper"]


def test_dkd_distils_with_unlabelled_examples_and_warms_up(colour_data, teacher_dir, tiny_timm_weights):
    train, test = colour_data
    r = distill(train, [teacher_dir], f"timm:test_efficientnet@{tiny_timm_weights}", "dkd",
                unlabelled=colours(6, "extra", 5), test=test, epochs=2, image_size=16, batch_size=8, warmup_epochs=2)
    h0, h1 = r.history
    assert h0["train_warmup"] < 0.5 <= h1["train_warmup"] < 1.0  # the ramp crosses epochs: half at epoch 2's start
    assert h0["train_tckd"] >= 0 and h1["train_nckd"] > 0
    assert r.metrics["options"] == {"warmup_epochs": 2.0} and r.metrics["n_unlabelled"] == 18
