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


class _Fed:
    """A torch dataset of ``(x, y)`` over a Dataset (``ds``), as the models' ImageTensors is."""

    def __init__(self, x: torch.Tensor, quality: list[float] | None) -> None:
        self.x = x
        meta = {} if quality is None else {"quality": quality}
        self.ds = Dataset("d", "array", np.zeros((len(x), 1)), np.zeros(len(x), dtype=np.int64), ("a",), meta=meta)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], torch.tensor(0)


def test_a_quality_column_replaces_the_proxy_in_the_inference_loop():
    from transferlab.models import predict_logits

    torch.manual_seed(0)
    net = _Tiny()
    w0, b0 = net.fc.weight.detach().clone(), net.fc.bias.detach().clone()
    x = torch.randn(5, 3, 2, 2)
    s = quality_proxy(x)
    d = float(s.max() - s.min())
    lo, hi = float(s.min()) - d, float(s.max()) + d  # the proxy's q of these images lies in [1/3, 2/3]
    params = inject_petal_(net, ["fc"], r=2, alpha=2, lo=lo, hi=hi, spread=1.5, center=0.25)
    with torch.no_grad():
        for p in params:
            p.normal_()
    f = x.flatten(1)
    delta = {k: f @ net.fc.lora_A[k].weight.detach().T @ net.fc.lora_B[k].weight.detach().T for k in ("hq", "lq")}

    def by_hand(q: torch.Tensor) -> torch.Tensor:
        w = (0.5 + 1.5 * (q - 0.25)).clamp(0, 1)  # spread 1.5, center 0.25: q = 0 -> 0.125, q = 1 -> 1 (clipped)
        return f @ w0.T + b0 + w[:, None] * delta["hq"] + (1 - w[:, None]) * delta["lq"]

    column = [0.0, 1.0, 0.0, 1.0, 0.0]
    proxy = ((s - lo) / (hi - lo)).clamp(0, 1)
    assert (proxy - torch.tensor(column)).abs().min() > 0.3  # the column and the proxy disagree on every example
    with_column = torch.from_numpy(predict_logits(net, _Fed(x, column), batch_size=2))  # batches of 2, 2 and 1
    without = torch.from_numpy(predict_logits(net, _Fed(x, None), batch_size=2))
    assert torch.allclose(with_column, by_hand(torch.tensor(column)), atol=1e-5)
    assert torch.allclose(without, by_hand(proxy), atol=1e-5)
    assert not torch.allclose(with_column, without, atol=1e-2)
    assert torch.allclose(net(x), by_hand(proxy), atol=1e-5)  # the column was used by its batches only


def test_fit_trains_each_set_on_the_column_only(tiny_model_ref, tmp_path):
    # every training (and validation) image has quality 1: the lq set's weight 1 - q is 0 for all of them, so its
    # B projections (peft starts them at zero) get no gradient and stay exactly zero; with the proxy they would move
    from transferlab.fit import fit
    from transferlab.models import load, predict_logits
    from transferlab.models._predict import feed

    base = load_dataset("builtin:fashion_mnist").stratified_sample(40, seed=0)
    images, _ = quality_mixed(np.asarray(base.items), "train")
    ds = Dataset("mixed", "image", images, base.labels, base.class_names, meta={"quality": np.ones(len(base))})
    r = fit(ds, tiny_model_ref, "petal", epochs=1, image_size=32, batch_size=16, out=tmp_path / "m", r=2)
    assert r.metrics["quality_source"] == "column"
    b = {k: [m.lora_B[k].weight for m in r.model.modules() if hasattr(m, "lora_B")] for k in ("hq", "lq")}
    assert b["lq"] and all(bool((w == 0).all()) for w in b["lq"])
    assert any(bool((w != 0).any()) for w in b["hq"])
    # predict: the saved model reads a column where the data has one; at quality 0 only the lq set (still zero)
    # acts, so zeroing the trained hq set changes nothing; the proxy (q > 0 on most images) would have used hq
    net = load(tmp_path / "m")
    plain = Dataset("t", "image", images[:8], base.labels[:8], base.class_names)
    low = Dataset("t", "image", images[:8], base.labels[:8], base.class_names, meta={"quality": np.zeros(8)})
    p_low, p_proxy = (predict_logits(net, feed(net, d), 4) for d in (low, plain))
    for m in net.modules():
        if hasattr(m, "lora_B"):
            torch.nn.init.zeros_(m.lora_B["hq"].weight)
    p_none = predict_logits(net, feed(net, plain), 4)
    assert np.allclose(p_low, p_none, atol=1e-5) and not np.allclose(p_proxy, p_none, atol=1e-4)
