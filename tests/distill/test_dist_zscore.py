"""``dist`` (DIST) and ``zscore`` (logit standardisation) against a NumPy hand computation and against numbers the
reference implementations produced on the same logits (tests/distill/data/dist_zscore_reference.json, made by
make_dist_zscore_reference.py: hunto/image_classification_sota @ 6f7a70a1dd57fd88413d83909d3d53243068f701
lib/models/losses/dist_kd.py DIST; sunshangquan/logit-standardization-KD @ f6e5aa5172bad618e801163c3385322eea673754
mdistiller/distillers/KD.py kd_loss, DKD.py dkd_loss with logit_stand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from transferlab.distill import METHODS
from transferlab.distill._losses import dist_loss, dkd_terms, soft_kl, standardised, tempered
from transferlab.distill._methods import Step
from transferlab.errors import TransferlabError
from transferlab.train import StepContext

REF = json.loads((Path(__file__).parent / "data" / "dist_zscore_reference.json").read_text())["cases"]


def _f64(x: list) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def hand_dist(zs: np.ndarray, zt: np.ndarray, t: float, beta: float = 1.0, gamma: float = 1.0) -> float:
    ps, pt = _softmax(zs / t), _softmax(zt / t)
    inter = 1 - np.mean([_pearson(ps[i], pt[i]) for i in range(len(ps))])
    intra = 1 - np.mean([_pearson(ps[:, c], pt[:, c]) for c in range(ps.shape[1])])
    return t * t * (beta * inter + gamma * intra)


def test_dist_loss_by_hand_on_a_small_case():
    """Two classes: a row (p, 1 − p) centred is (p − ½, ½ − p), so two rows correlate by the sign of (p − ½)(q − ½),
    and 0 against a flat row (the eps). Student logits [[1, 0], [0, 1]]: rows (a, 1 − a), (1 − a, a), a > ½; teacher
    [[2, 0], [0, 0]]: rows (b, 1 − b), (½, ½). Per example: ρ = +1 and 0: inter = 1 − ½. Per class: the student's
    column 0 (a, 1 − a) and the teacher's (b, ½) both fall: ρ = +1, column 1 likewise: intra = 0. T = 2 keeps every
    sign and multiplies by T² = 4."""
    zs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    zt = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert float(dist_loss(zs, tempered(zt, 1.0), 1.0)) == pytest.approx(0.5, abs=1e-6)
    assert float(dist_loss(zs, tempered(zt, 2.0), 2.0)) == pytest.approx(4 * 0.5, abs=1e-5)  # eps 1e-8 over small norms
    assert float(dist_loss(zs, tempered(zt, 1.0), 1.0, beta=3.0, gamma=5.0)) == pytest.approx(1.5, abs=1e-6)
    # the same relations: only the flat row (ρ = 0, even with itself) costs: inter = ½, intra = 0
    assert float(dist_loss(zt * 3, tempered(zt, 1.0), 1.0)) == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("case", range(len(REF)))
def test_dist_equals_the_reference_and_the_hand_computation(case):
    c = REF[case]
    zs, zt, t = np.array(c["student"]), np.array(c["teacher"]), c["temperature"]
    ours = float(dist_loss(torch.tensor(zs), tempered(torch.tensor(zt), t), t))
    assert ours == pytest.approx(c["dist"], rel=1e-9, abs=1e-9)
    assert ours == pytest.approx(hand_dist(zs, zt, t), rel=1e-6)
    weighted = float(dist_loss(torch.tensor(zs), tempered(torch.tensor(zt), t), t, beta=0.5, gamma=2.0))
    assert weighted == pytest.approx(c["dist_beta0.5_gamma2"], rel=1e-9)


@pytest.mark.parametrize("case", range(len(REF)))
def test_zscore_equals_the_reference(case):
    """The reference standardises with torch.std's unbiased (n − 1) deviation; KD and DKD on standardised logits."""
    c = REF[case]
    zs, zt, t, y = _f64(c["student"]), _f64(c["teacher"]), c["temperature"], torch.tensor(c["labels"])
    np.testing.assert_allclose(standardised(zs).numpy(), np.array(c["normalised_student"]), rtol=1e-12, atol=1e-12)
    z = np.array(c["student"])
    by_hand = (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=1, keepdims=True) + 1e-7)
    np.testing.assert_allclose(standardised(zs).numpy(), by_hand, rtol=1e-12)
    kd = float(soft_kl(standardised(zs), tempered(standardised(zt), t), t))
    assert kd == pytest.approx(c["kd_zscore"], rel=1e-9)
    tckd, nckd = dkd_terms(standardised(zs), standardised(zt), y, t)
    assert float(tckd + 8.0 * nckd) == pytest.approx(c["dkd_zscore_a1_b8"], rel=1e-6)


def _ctx() -> StepContext:
    return StepContext(epoch=9, epochs=10, step=0, batch=0, progress=1.0, device="cpu", generator=None)


def _method_loss(name: str, **options) -> float:
    c = REF[1]
    zs, zt, y = _f64(c["student"]), _f64(c["teacher"]), torch.tensor(c["labels"])
    value, _ = METHODS.get(name)(1, **options).loss(Step(zs, zs, [zt], y, [1.0], _ctx()), {})
    return float(value)


def _ce(z: np.ndarray, y: np.ndarray) -> float:
    z = z - z.max(1, keepdims=True)
    return float(-(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(len(y)), y].mean())


def test_methods_put_zscore_on_the_soft_term_only():
    c = REF[1]
    ce, t = _ce(np.array(c["student"]), np.array(c["labels"])), c["temperature"]
    kd = _method_loss("kd", temperature=t, kd_weight=0.5, zscore=True)
    assert kd == pytest.approx(0.5 * ce + 0.5 * c["kd_zscore"], rel=1e-9)
    assert kd != pytest.approx(_method_loss("kd", temperature=t, kd_weight=0.5), rel=1e-3)  # the option acts
    assert _method_loss("multi_avg", temperature=t, kd_weight=0.5, zscore=True) == pytest.approx(kd, rel=1e-12)
    dkd = _method_loss("dkd", temperature=t, warmup_epochs=0.0, zscore=True)
    assert dkd == pytest.approx(ce + c["dkd_zscore_a1_b8"], rel=1e-6)
    dist = _method_loss("dist", temperature=t)  # the reference's weights: CE 1, DIST 2 (its configs' kd_loss_weight)
    assert dist == pytest.approx(ce + 2.0 * c["dist"], rel=1e-9)
    assert _method_loss("dist", temperature=t, ce_weight=0.5, dist_weight=1.0) == pytest.approx(
        0.5 * ce + c["dist"], rel=1e-9)
    with pytest.raises(TransferlabError, match="dist distils one teacher"):
        METHODS.get("dist")(2)
    with pytest.raises(TransferlabError, match="gamma must be a finite number >= 0"):
        METHODS.get("dist")(1, gamma=-1.0)
