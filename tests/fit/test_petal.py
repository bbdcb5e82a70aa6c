"""PETALface: the quality proxy by hand, the per-example mix of the two LoRA sets by hand, the quality-mixed shift,
and the calibration on a mixed training split."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from transferlab.data import Dataset, load_dataset
from transferlab.data._shifts import quality_mixed
from transferlab.models import inject_petal_, quality_proxy


def test_quality_proxy_of_a_ramp_by_hand():
    # g[i, j] = i on an H x W grid: the Laplacian (replicate padding) is 0 inside, +1 on the top row, -1 on the bottom
    # row: energy 2W / (HW) = 2/H; the unbiased variance of 0..H-1 repeated W times is (H^2-1)/12 * N/(N-1)
    h, w = 8, 5
    x = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(1, 3, h, w)
    n = h * w
    var = (h * h - 1) / 12 * n / (n - 1)
    assert float(quality_proxy(x)[0]) == float(np.float32(math.log((2 / h + 1e-8) / (var + 1e-8))))


def test_down_sampled_images_score_lower():
    ds = load_dataset("builtin:fashion_mnist", "test").stratified_sample(40, seed=0)
    mixed, low = quality_mixed(np.asarray(ds.items), "test", share=0.5, factor=4)
    assert 10 < low.sum() < 30 and np.array_equal(mixed[~low], np.asarray(ds.items)[~low])
    x = torch.as_tensor(np.concatenate([np.asarray(ds.items), mixed[low]]))[:, None].float() / 255
    s = quality_proxy(x)
    orig, degraded = s[:len(ds)][torch.as_tensor(low)], s[len(ds):]
    assert bool((degraded < orig).all())  # every image loses effective resolution when degraded


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_each_example_mixes_the_two_lora_sets_by_its_quality():
    torch.manual_seed(0)
    net = _Tiny()
    w0, b0 = net.fc.weight.detach().clone(), net.fc.bias.detach().clone()
    params = inject_petal_(net, ["fc"], r=2, alpha=6, lo=0.0, hi=1.0)
    assert len(params) == 4  # A and B of each set (no biases)
    with torch.no_grad():
        for p in params:
            p.normal_()
    x = torch.randn(3, 3, 2, 2)
    q = torch.tensor([1.0, 0.25, 0.0])
    net.petal.given = q
    out = net(x)
    f = x.flatten(1)
    a = {k: net.fc.lora_A[k].weight.detach() for k in ("hq", "lq")}
    b = {k: net.fc.lora_B[k].weight.detach() for k in ("hq", "lq")}
    scale = 6 / 2
    delta = {k: f @ a[k].T @ b[k].T * scale for k in ("hq", "lq")}
    expect = f @ w0.T + b0 + q[:, None] * delta["hq"] + (1 - q[:, None]) * delta["lq"]
    assert torch.allclose(out, expect, atol=1e-5)


def test_calibration_separates_the_qualities_of_a_mixed_split(tiny_model_ref):
    from transferlab.fit import FitContext
    from transferlab.fit._petal import calibrate
    from transferlab.models import ImageTensors, resolve

    base = load_dataset("builtin:fashion_mnist").stratified_sample(60, seed=0)
    images, low = quality_mixed(np.asarray(base.items), "train")
    ds = Dataset("mixed", "image", images, base.labels, base.class_names)
    backbone = resolve(tiny_model_ref)
    lo, hi = calibrate(FitContext(backbone, ds, 32, 0))
    t = ImageTensors(ds, 32, tuple(backbone.mean), tuple(backbone.std))
    s = quality_proxy(torch.stack([t[i][0] for i in range(len(t))])).numpy()
    q = np.clip((s - lo) / (hi - lo), 0, 1)
    assert lo < hi and q[low].mean() < 0.3 < 0.7 < q[~low].mean()
