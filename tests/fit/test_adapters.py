"""Unified-view adapters: identity at initialisation, what trains, every placement, MAM, save/load."""

import pytest
import timm
import torch

from transferlab.errors import TransferlabError
from transferlab.fit import METHODS, FitContext
from transferlab.models import AdapterConfig, inject_adapters_

ARCHS = {"test_efficientnet": 64, "test_resnet": 64, "test_convnext": 64, "test_vit": 160}


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("insertion", ["sequential", "parallel"])
def test_adapted_model_starts_as_the_pretrained_one(arch, insertion):
    size = ARCHS[arch]
    torch.manual_seed(0)
    m = timm.create_model(arch, pretrained=False, num_classes=3).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        before = m(x)
    params = inject_adapters_(m, AdapterConfig(insertion=insertion, placement="block", r=4), image_size=size)
    assert params and all(p.requires_grad for p in params)
    assert not any(p.requires_grad for n, p in m.named_parameters() if "adapter" not in n)
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(x), before)
    # and gradients reach the adapters
    m(x).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("placement, expected", [("attn", 6), ("ffn", 6), ("both", 12)])
def test_transformer_placements(placement, expected):
    m = timm.create_model("test_vit", pretrained=False, num_classes=3)
    inject_adapters_(m, AdapterConfig(placement=placement, r=4), image_size=160)
    adapted = [n for n, mod in m.named_modules() if type(mod).__name__ == "Adapted"]
    assert len(adapted) == expected
    suffix = {"attn": ".attn", "ffn": ".mlp"}.get(placement)
    if suffix:
        assert all(n.endswith(suffix) for n in adapted)


def test_learned_scaling_is_a_parameter_and_fixed_is_not():
    m = timm.create_model("test_vit", pretrained=False, num_classes=3)
    params = inject_adapters_(m, AdapterConfig(learned_scaling=True, scaling=2.0, r=4), image_size=160)
    scales = [p for p in params if p.ndim == 0]
    assert len(scales) == 6 and all(float(s.detach()) == 2.0 for s in scales)
    m2 = timm.create_model("test_vit", pretrained=False, num_classes=3)
    assert not any(p.ndim == 0 for p in inject_adapters_(m2, AdapterConfig(r=4), image_size=160))


def test_mam_adds_prefixes_and_parallel_ffn_adapters():
    m = timm.create_model("test_vit", pretrained=False, num_classes=3)
    prep = METHODS.get("mam")(m, FitContext(None, None, 160), r=4, prefix=5)
    kinds = {type(mod).__name__ for mod in prep.model.modules()}
    assert {"PrefixAttention", "Adapted"} <= kinds
    pa = next(mod for mod in prep.model.modules() if type(mod).__name__ == "PrefixAttention")
    assert pa.prefix_k.shape == (pa.attn.num_heads, 5, pa.attn.head_dim)
    ad = next(mod for mod in prep.model.modules() if type(mod).__name__ == "Adapted")
    assert float(ad.adapter.scale) == 4.0 and ad.insertion == "parallel"
    out = prep.model(torch.randn(2, 3, 160, 160))
    out.sum().backward()
    assert pa.prefix_v.grad is not None


def test_attention_placements_need_attention():
    m = timm.create_model("test_efficientnet", pretrained=False, num_classes=3)
    with pytest.raises(TransferlabError, match="needs attention blocks.*placement='block'"):
        inject_adapters_(m, AdapterConfig(placement="ffn"), image_size=64)
    with pytest.raises(TransferlabError, match="prefix tuning needs attention"):
        inject_adapters_(timm.create_model("test_efficientnet", pretrained=False), AdapterConfig(prefix=4),
                         image_size=64)


def test_adapter_fit_saves_and_loads(tiny_model_ref, tmp_path):
    from transferlab.data import load_dataset
    from transferlab.fit import fit
    from transferlab.models import load

    tr = load_dataset("builtin:digits").stratified_sample(120)
    te = load_dataset("builtin:digits", "test").stratified_sample(40)
    r = fit(tr, tiny_model_ref, "adapter", test=te, out=tmp_path / "a", epochs=1, image_size=32, r=4,
            insertion="sequential")
    assert r.metrics["trainable_params"] < r.metrics["total_params"] / 3
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "a")(x), r.model.eval()(x))


def test_gradcam_targets_the_last_feature_map_and_skips_token_models():
    from transferlab.fit._cam import last_spatial_layer

    cnn = timm.create_model("test_efficientnet", pretrained=False)
    layer = last_spatial_layer(cnn, torch.randn(1, 3, 64, 64))
    assert layer is not None and layer in list(cnn.bn2.modules())
    vit = timm.create_model("test_vit", pretrained=False)
    assert last_spatial_layer(vit, torch.randn(1, 3, 160, 160)) is None
