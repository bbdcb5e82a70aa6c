"""BlackVIP: the SPSA estimate against the true gradient, SPSA-GC against SPSA at equal queries, and a fit that never
reads, changes or differentiates through the black box."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import fit
from transferlab.fit._blackvip import Spsa, perturbation, spsa_gradient


def test_spsa_estimate_points_along_the_gradient_of_the_squared_norm():
    # f(w) = ||w||^2, gradient 2w (by hand); the averaged two-sided estimate is unbiased for a quadratic
    g = torch.Generator().manual_seed(0)
    w = torch.linspace(-1.0, 2.0, 20, dtype=torch.float64)
    est, value = spsa_gradient(lambda v: (v**2).sum(), w, c=0.01, n=400, generator=g)
    true = 2 * w
    assert torch.nn.functional.cosine_similarity(est, true, 0) > 0.9
    assert value == pytest.approx(float((w**2).sum()), rel=1e-3)


def test_perturbation_is_the_segmented_uniform():
    d = perturbation(10_000, torch.Generator().manual_seed(1))
    assert d.abs().min() >= 0.5 and d.abs().max() <= 1.0
    assert abs(float((d > 0).double().mean()) - 0.5) < 0.03


def test_one_spsa_step_matches_a_hand_computation():
    # t = 1: a_1 = a / (1 + o)^alpha, c_1 = c; one perturbation d; f(w) = sum(w): (f(w+cd) - f(w-cd)) / (2 c d_i)
    # = sum(d) / d_i; GC's first step has m = g, so the step is g + beta g
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    d = perturbation(3, torch.Generator().manual_seed(3)).double()
    g = d.sum() / d
    for gc in (False, True):
        s = Spsa(a=0.1, c=0.05, o=1.0, alpha=0.4, sp_avg=1, gc=gc)
        new, _ = s.step(lambda v: v.sum(), w, torch.Generator().manual_seed(3))
        expect = w - 0.1 / 2**0.4 * (g * (1 + 0.9) if gc else g)
        assert torch.allclose(new, expect, atol=1e-12)


def _run(gc: bool, seed: int, steps: int = 150) -> float:
    # a fixed ill-conditioned quadratic; both optimisers take the same steps (2 x sp_avg evaluations each)
    scales = torch.logspace(-1, 0, 10, dtype=torch.float64)
    f = lambda v: float((scales * (v - 1.0) ** 2).sum())  # noqa: E731
    w = torch.zeros(10, dtype=torch.float64)
    s = Spsa(a=0.01, c=0.01, sp_avg=1, gc=gc)  # the reference's gains
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        w, _ = s.step(f, w, g)
    return f(w)


def test_spsa_gc_reaches_a_lower_loss_than_spsa_at_equal_queries():
    gc = [_run(True, s) for s in range(5)]
    plain = [_run(False, s) for s in range(5)]
    # from f = 4.0 at w = 0: SPSA-GC ends below half of plain SPSA's loss with every seed
    assert all(a < 0.5 * b for a, b in zip(gc, plain, strict=True)) and np.mean(plain) < 4.0


@pytest.fixture(scope="module")
def digits():
    return load_dataset("builtin:digits").stratified_sample(40, seed=2)


def test_fit_uses_the_black_box_only_through_predict_proba(digits, tiny_model_ref, tmp_path, monkeypatch):
    from transferlab.fit import _blackvip

    seen = {}
    real_init = _blackvip.BlackBox.__init__

    def spy_init(self, net):
        real_init(self, net)
        seen["net"] = net
        seen["before"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.register_full_backward_hook(lambda *a: seen.setdefault("backward", True))

    monkeypatch.setattr(_blackvip.BlackBox, "__init__", spy_init)
    r = fit(digits, tiny_model_ref, "blackvip", out=tmp_path / "m", epochs=3, image_size=32, batch_size=16,
            val_fraction=0.2, sp_avg=2, query_budget=300)
    net = seen["net"]
    after = {k: v for k, v in net.state_dict().items() if not k.startswith("blackvip.")}
    assert after.keys() == seen["before"].keys()
    assert all(torch.equal(after[k], seen["before"][k]) for k in after)  # weights and statistics untouched
    assert all(p.grad is None and not p.requires_grad for n, p in net.named_parameters() if "blackvip" not in n)
    assert "backward" not in seen
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    # 30 training images in batches of 16 and 14; a step sends 2 x sp_avg x batch images (64, 56): epochs 1-2 take
    # 240, epoch 3's first step (64) would pass 300 and is skipped, its second (56) fits: 296 queries in 5 steps
    assert m["n_train"] == 30
    assert m["queries_train"] == 296 and m["spsa_steps"] == 5 and m["query_budget"] == 300
    assert m["queries_eval"] > 0 and m["queries"] == m["queries_train"] + m["queries_eval"]
    assert r.metrics["trainable_params"] == sum(p.numel() for p in r.model.blackvip.trained())


def test_bad_options_are_clear_errors(digits, tiny_model_ref):
    with pytest.raises(TransferlabError, match="estimator"):
        fit(digits, tiny_model_ref, "blackvip", epochs=1, image_size=32, val_fraction=0, estimator="adam")
    with pytest.raises(TransferlabError, match="query_budget"):
        fit(digits, tiny_model_ref, "blackvip", epochs=1, image_size=32, val_fraction=0, query_budget=3)


def test_cli_black_box_goes_with_blackvip_only(tmp_path):
    from typer.testing import CliRunner

    from transferlab.cli import app

    r = CliRunner().invoke(app, ["fit", "builtin:digits", "-m", "builtin:small_resnet_shapes", "--method", "lora",
                                 "--black-box", str(tmp_path)])
    assert r.exit_code == 2 and "--black-box" in r.output and "blackvip" in r.output
