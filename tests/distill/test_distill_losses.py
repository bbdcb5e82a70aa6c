"""The distillation losses against torchdistill's KDLoss (reference vectors) and hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from transferlab.distill._losses import hard_ce, kd_loss, kl_dp_choice, kl_dp_targets, mixed_teacher, soft_kl

REF = json.loads((Path(__file__).parent / "data" / "kd_reference.json").read_text())


@pytest.mark.parametrize("case", REF["cases"], ids=lambda c: f"T{c['temperature']}-a{c['alpha']}")
def test_kd_equals_torchdistill_kdloss(case):
    zs, zt = torch.tensor(case["student"], dtype=torch.float64), torch.tensor(case["teacher"], dtype=torch.float64)
    y = torch.tensor(case["labels"])
    t = case["temperature"]
    ours = kd_loss(zs, torch.softmax(zt / t, 1), y, t, kd_weight=1 - case["alpha"])  # their alpha is our 1 - w
    assert float(ours) == pytest.approx(case["loss"], rel=1e-6, abs=1e-9)


def test_kd_terms_by_hand():
    zs = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    p_t = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64)
    t = 2.0
    q = torch.softmax(zs / t, 1)
    kl = float((p_t * (p_t.log() - q.log())).sum(1).mean()) * t * t
    assert float(soft_kl(zs, p_t, t)) == pytest.approx(kl, rel=1e-12)
    y = torch.tensor([0, -1])  # the second example is unlabelled: no cross-entropy
    ce = -math.log(float(torch.softmax(zs[0], 0)[0]))
    assert float(hard_ce(zs, y)) == pytest.approx(ce, rel=1e-12)
    assert float(kd_loss(zs, p_t, y, t, 0.25)) == pytest.approx(0.75 * ce + 0.25 * kl, rel=1e-12)
    assert float(kd_loss(zs, p_t, y, t, 1.0)) == pytest.approx(kl, rel=1e-12)
    assert float(hard_ce(zs, torch.tensor([-1, -1]))) == 0.0


def test_mixed_teacher_averages_tempered_probabilities():
    z1 = torch.tensor([[4.0, 0.0]], dtype=torch.float64)
    z2 = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    p1, p2 = torch.softmax(z1 / 2, 1), torch.softmax(z2 / 2, 1)
    assert torch.allclose(mixed_teacher([z1, z2], 2.0), (p1 + p2) / 2)
    assert torch.allclose(mixed_teacher([z1, z2], 2.0, [0.8, 0.2]), 0.8 * p1 + 0.2 * p2)


def test_kl_dp_follows_whoever_is_most_right():
    # candidate 0: the frozen starting student; 1 and 2: teachers. Probabilities at T = 1 decide.
    start = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.9, 0.05, 0.05]]))
    t1 = torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]]))
    t2 = torch.log(torch.tensor([[0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]]))
    y = torch.tensor([0, 1, 2, -1])
    # ex 0, true 0: 0.6 / 0.8 / 0.5 -> teacher 1; ex 1, true 1: 0.5 / 0.2 / 0.6 -> teacher 2;
    # ex 2, true 2: 0.2 / 0.6 / 0.2 -> teacher 1; ex 3 unlabelled, max prob: 0.9 / 0.5 / 0.8 -> the start
    assert kl_dp_choice([start, t1, t2], y).tolist() == [1, 2, 1, 0]
    # a tie keeps the starting point: a teacher must be strictly better
    assert kl_dp_choice([t2, t2.clone()], torch.tensor([0, 1, 2, 0])).tolist() == [0, 0, 0, 0]
    p, choice = kl_dp_targets([start, t1, t2], y, 2.0)
    assert torch.allclose(p[1], torch.softmax(t2[1] / 2, 0)) and torch.allclose(p[3], torch.softmax(start[3] / 2, 0))
