"""Layer aggregation (``extract_features(..., layers=)``): ``last`` is what it was (features and cache keys); ``mean``
is the mean of the layers' pooled features, computed here independently with forward hooks; each mode its own cache
entry."""

import numpy as np
import pytest

from transferlab.data import load_dataset
from transferlab.data._dataset import Dataset
from transferlab.errors import TransferlabError
from transferlab.zoo import FeatureCache, cache_key, extract_features, resolve_model
from transferlab.zoo._backbone import TorchImageBackbone


@pytest.fixture(scope="module")
def digits():
    return load_dataset("builtin:digits").stratified_sample(24, seed=0)


def _hooked(model, names, run):
    """Outputs of the named modules while ``run()`` runs (the test's own hooks, not the code under test)."""
    modules = dict(model.named_modules())
    caught = {n: [] for n in names}
    handles = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: caught[n].append(out)) for n in names]
    try:
        result = run()
    finally:
        for h in handles:
            h.remove()
    return [caught[n][0] for n in names], result


def _image_layers_by_hooks(backbone, ds, size):
    """Every stage (the modules timm's feature_info names), globally average-pooled, then the head's pooled
    features: the layers the docs promise, computed directly."""
    import torch

    from transferlab.zoo._images import image_batches

    model = backbone.model
    names = [f["module"] for f in model.feature_info]
    prefix = getattr(model, "num_prefix_tokens", 0)
    x = next(image_batches(ds, np.arange(len(ds)), batch_size=len(ds), size=size, mean=backbone.mean,
                           std=backbone.std))
    with torch.inference_mode():
        outs, feats = _hooked(model, names, lambda: model.forward_head(model.forward_features(x), pre_logits=True))
    pooled = [o.mean((2, 3)) if o.ndim == 4 else o[:, prefix:].mean(1) for o in outs]
    return [p.numpy().astype(np.float64) for p in [*pooled, feats]]


@pytest.mark.parametrize("ref", ["builtin:small_vit_shapes", "builtin:small_convnext_fashion"])
def test_image_mean_is_the_mean_of_the_stages_of_the_output_width(ref, digits):
    backbone = resolve_model(ref)
    layers = _image_layers_by_hooks(backbone, digits, 32)
    width = layers[-1].shape[1]
    same = [x for x in layers if x.shape[1] == width]
    assert len(same) >= 2  # ViT: 6 blocks + its output; ConvNeXt: the last stage + its output
    mean = extract_features(backbone, digits, image_size=32, layers="mean")
    np.testing.assert_allclose(mean.features, np.mean(same, axis=0), rtol=1e-4, atol=1e-5)
    assert mean.meta["layers"]["count"] == len(layers) and len(mean.meta["layers"]["averaged"]) == len(same)
    best = extract_features(backbone, digits, image_size=32, layers="best")
    assert [x.shape[1] for x in best.layers] == [x.shape[1] for x in layers]
    for got, want in zip(best.layers, layers, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(best.features, extract_features(backbone, digits, image_size=32).features)


def test_without_forward_intermediates_hooks_give_the_same_layers(digits):
    """A backbone whose encode is its own (not timm's): its stages come from hooks, the same layers."""

    class OwnEncode(TorchImageBackbone):
        def encode(self, x):
            m = self.model
            feats = m.forward_head(m.forward_features(x), pre_logits=True)
            return feats, m.get_classifier()(feats)

    timm_way = resolve_model("builtin:small_vit_textures")
    own = OwnEncode("builtin:small_vit_textures", timm_way._builder, weights_id="own", mean=timm_way.mean,
                    std=timm_way.std, native_size=32, has_head=True)
    a = extract_features(timm_way, digits, layers="best")
    b = extract_features(own, digits, layers="best")
    assert len(a.layers) == len(b.layers) == 7
    for x, y in zip(a.layers, b.layers, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.source_probs, b.source_probs, rtol=1e-5, atol=1e-6)


def test_text_mean_is_the_mean_of_the_hidden_layers_pooled_like_the_output(tiny_text_ref, tiny_text_model_dir):
    import torch
    from tests.conftest import make_text_dataset
    from transformers import AutoModel, AutoTokenizer

    ds = make_text_dataset(4)
    tok = AutoTokenizer.from_pretrained(str(tiny_text_model_dir))
    model = AutoModel.from_pretrained(str(tiny_text_model_dir)).eval()
    enc = tok(list(ds.items), padding=True, truncation=True, max_length=256, return_tensors="pt")
    names = [f"encoder.layer.{i}" for i in range(model.config.num_hidden_layers)]
    with torch.inference_mode():
        outs, last = _hooked(model, names, lambda: model(**enc).last_hidden_state)
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = [((o[0] if isinstance(o, tuple) else o) * mask).sum(1) / mask.sum(1) for o in outs]
    backbone = resolve_model(tiny_text_ref)
    np.testing.assert_allclose(extract_features(backbone, ds, layers="mean").features,
                               torch.stack(pooled).mean(0).numpy(), rtol=1e-5, atol=1e-6)
    out = extract_features(backbone, ds)  # last: the output, mean-pooled as before
    np.testing.assert_allclose(out.features, ((last * mask).sum(1) / mask.sum(1)).numpy(), rtol=1e-6, atol=1e-7)
    best = extract_features(backbone, ds, layers="best")
    assert len(best.layers) == 2
    np.testing.assert_array_equal(best.layers[-1], out.features)


def test_sentence_transformer_layers_end_in_its_encode_output():
    backbone = resolve_model("builtin:minilm_l6")
    ds = load_dataset("builtin:rotten-tomatoes").stratified_sample(12, seed=0)
    best = extract_features(backbone, ds, layers="best")
    assert [x.shape[1] for x in best.layers] == [384] * 6
    np.testing.assert_allclose(best.layers[-1], extract_features(backbone, ds).features, rtol=1e-5, atol=1e-6)
    # its Normalize module applies to every layer, as to the output
    np.testing.assert_allclose(np.linalg.norm(best.layers[0], axis=1), 1.0, rtol=1e-5)


def test_each_mode_is_its_own_cache_entry_and_last_keeps_its_key(digits, tmp_path):
    backbone = resolve_model("builtin:small_resnet_shapes")
    cache = FeatureCache(tmp_path)
    got = {m: extract_features(backbone, digits, image_size=32, cache=cache, layers=m) for m in ("last", "mean", "best")}
    keys = {m: f.meta["cache_key"] for m, f in got.items()}
    assert len(set(keys.values())) == 3
    legacy = cache_key({"model": backbone.identity(), "preprocessing": backbone.preprocessing(32),
                        "dataset": digits.fingerprint, "n": len(digits)})
    assert keys["last"] == legacy  # caches written before layer modes stay valid
    assert "layers" not in got["last"].meta and got["last"].layers is None
    again = {m: extract_features(resolve_model("builtin:small_resnet_shapes"), digits, image_size=32, cache=cache,
                                 layers=m) for m in ("last", "mean", "best")}
    assert all(f.cache_hit for f in again.values())
    np.testing.assert_array_equal(again["mean"].features, got["mean"].features)
    for x, y in zip(again["best"].layers, got["best"].layers, strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_backbone_without_inner_layers_gives_its_output_in_every_mode(tmp_path):
    x = np.random.default_rng(0).standard_normal((40, 6))
    ds = Dataset("arr", "array", x, np.arange(40) % 2, ("a", "b"))
    pixels = resolve_model("builtin:pixels")
    last = extract_features(pixels, ds).features
    np.testing.assert_array_equal(extract_features(pixels, ds, layers="mean").features, last)
    best = extract_features(pixels, ds, layers="best")
    assert len(best.layers) == 1
    np.testing.assert_array_equal(best.layers[0], last)


def test_an_unknown_mode_is_refused(digits):
    with pytest.raises(TransferlabError, match="last, mean, best"):
        extract_features(resolve_model("builtin:pixels"), digits, layers="middle")


def test_a_chunk_whose_layer_widths_were_altered_is_recomputed(digits, tmp_path, caplog):
    backbone = resolve_model("builtin:small_resnet_shapes")
    cache = FeatureCache(tmp_path)
    first = extract_features(backbone, digits, image_size=32, cache=cache, layers="best")
    chunk = cache.entry(first.meta["cache_key"]).path / "chunk-000000.npz"
    with np.load(chunk) as z:
        arrays = dict(z)
    arrays["layer_dims"] = arrays["layer_dims"][::-1].copy()  # same total width, other layers: a wrong split
    with open(chunk, "wb") as fh:
        np.savez(fh, **arrays)
    again = extract_features(resolve_model("builtin:small_resnet_shapes"), digits, image_size=32, cache=cache,
                             layers="best")
    assert not again.cache_hit and "does not match its checksum" in caplog.text
    assert [x.shape[1] for x in again.layers] == [x.shape[1] for x in first.layers]
    for x, y in zip(again.layers, first.layers, strict=True):
        np.testing.assert_array_equal(x, y)
