"""EASE (issue 31): the prototype synthesis and the class scores against the reference code's own functions on fixed
inputs (tests/continual/data/ease_reference.json, made by make_ease_reference.py from sun-hailong/CVPR24-Ease @
6d67508: Learner.solve_sim_reset and CosineLinear.forward_reweight run as written), and the network's one-pass
features of every subspace equal to each adapter's alone."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from transferlab.continual._ease import Ease
from transferlab.models import EaseHead

REFERENCE = json.loads((Path(__file__).parent / "data" / "ease_reference.json").read_text())


def _fake_run(kind: str, t: int, per: int, d: int, weight: np.ndarray) -> SimpleNamespace:
    """A run whose heads hold the reference's fc weight (class-incremental: one head; task-incremental: a head per
    task with its classes' rows)."""
    protos = torch.tensor(weight, dtype=torch.float32).view(t * per, t, d)
    if kind == "class":
        head = EaseHead(d, t, t * per, 0.1)
        head.protos.copy_(protos)
        head.own.copy_(torch.arange(t * per) // per)
        heads = {"0": head}
        tasks = [SimpleNamespace(classes=list(range(k * per, (k + 1) * per))) for k in range(t)]
    else:
        heads = {}
        for k in range(t):
            heads[str(k)] = EaseHead(d, t, per, 0.1)
            heads[str(k)].protos.copy_(protos[k * per:(k + 1) * per])
            heads[str(k)].own.fill_(k)
        tasks = [SimpleNamespace(classes=list(range(per))) for _ in range(t)]
    return SimpleNamespace(stream=SimpleNamespace(kind=kind, tasks=tasks), modules={"heads": heads})


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: f"{c['tasks']}x{c['per']}")
@pytest.mark.parametrize("kind", ["class", "task"])
def test_synthesis_and_scores_equal_the_reference_codes(case, kind):
    t, per, d = case["tasks"], case["per"], case["dim"]
    run = _fake_run(kind, t, per, d, np.asarray(case["weight"]))
    Ease(16, 0.1).synthesise_all(run, t - 1)
    heads = run.modules["heads"]
    got = (heads["0"].protos if kind == "class" else torch.cat([heads[str(k)].protos for k in range(t)]))
    want = torch.tensor(case["synthesised"])
    assert not torch.allclose(torch.tensor(case["weight"]), want)  # the synthesis changed something
    torch.testing.assert_close(got.reshape(t * per, t * d), want, rtol=1e-5, atol=1e-6)
    x = torch.tensor(case["features"])  # [B, t*d]: the reference's concatenated subspaces
    rows = x.view(len(x), t, d).transpose(0, 1).reshape(t * len(x), d)  # subspace-major, as the network gives them
    for h in heads.values():
        h.active.fill_(t)
    logits = (heads["0"](rows) if kind == "class" else torch.cat([heads[str(k)](rows) for k in range(t)], 1))
    torch.testing.assert_close(logits, torch.tensor(case["logits"]), rtol=1e-5, atol=1e-6)


def test_one_pass_gives_every_subspaces_features(tiny_model_ref):
    from transferlab.models import AdapterConfig, build, inject_task_adapters_, resolve

    net = build(resolve(tiny_model_ref), 0).net.eval()
    net.reset_classifier(0)
    torch.manual_seed(0)
    switch = inject_task_adapters_(net, AdapterConfig(r=4), n_tasks=3, image_size=16)
    with torch.no_grad():
        for p in net.parameters():  # the adapters' up-projections start at zero: give each its own effect
            if p.ndim == 2:
                p.normal_(0, 0.5)
    x = torch.randn(5, 3, 16, 16)
    switch.active = 3
    with torch.no_grad():
        together = net(x)
        alone = []
        for k in range(3):
            switch.mode = k
            alone.append(net(x))
        switch.mode = None
    assert together.shape == (15, alone[0].shape[1])
    assert not torch.allclose(alone[0], alone[1])
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-5)
