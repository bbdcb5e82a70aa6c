"""A backbone's resize interpolation: a timm pretrained config's ``interpolation`` (bicubic for many) reaches the zoo's
feature batches and every adapted model's inputs (evaluation and the training crops); the built-in models stay
bilinear, with the very preprocessing and feature cache keys they had before the interpolation was read."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.data import Dataset
from transferlab.errors import DataError
from transferlab.models import ImageTensors
from transferlab.zoo import cache_key, eval_transform, resolve_model

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _by_hand(x, size, mode):
    """The evaluation preprocessing written out with torchvision v2 (not through transferlab)."""
    import torch
    from torchvision.transforms import InterpolationMode, v2

    pipe = v2.Compose([v2.Resize((size, size), interpolation=getattr(InterpolationMode, mode), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    return pipe(x)


def _images(n=4, side=40, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset("imgs", "image", rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), np.arange(n) % 2,
                   ("a", "b"))


def test_builtin_models_keep_their_preprocessing_and_cache_key():
    # literal values read before the interpolation was passed anywhere (commit d5a575a): /tmp/benchcache stays valid
    prep = {"size": 224, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bilinear",
            "resize": "square-uint8", "channels": "rgb"}
    lite = resolve_model("builtin:efficientnet_lite0")
    assert lite.preprocessing(None) == prep
    assert cache_key({"model": lite.identity(), "preprocessing": lite.preprocessing(None), "dataset": "fp0",
                      "n": 10}) == "de0b2af589883d8be3b988f6e5465e78def56f4314ac846b7f2a1596d55a2388"
    assert cache_key({"model": lite.identity(), "preprocessing": lite.preprocessing(64), "dataset": "fp0",
                      "n": 10}) == "a93375b26f1472545c0deb3a82aa4ff1c4643ef4ab5a95b523af0c47045a7aa9"
    for name in ("small_resnet_shapes", "small_vit_textures", "small_convnext_fashion"):  # timm test_vit/convnext
        b = resolve_model(f"builtin:{name}")  # say bicubic in timm's cfg; these were trained here, bilinear
        assert b.preprocessing(None) == {**prep, "size": 32}, name


def test_timm_cfg_interpolation_reaches_the_features(tiny_model_ref):
    import timm
    import torch

    assert timm.get_pretrained_cfg("test_efficientnet").interpolation == "bicubic"  # the premise, from timm
    b = resolve_model(tiny_model_ref)
    assert b.interpolation == "bicubic" and b.preprocessing(24)["interpolation"] == "bicubic"
    ds = _images()
    got = np.concatenate([bt.features for bt in b.batches(ds, np.arange(len(ds)), batch_size=2, image_size=24)])
    x = torch.from_numpy(ds.items).permute(0, 3, 1, 2)
    with torch.inference_mode():
        m = b.model
        want = {mode: m.forward_head(m.forward_features(_by_hand(x, 24, mode)), pre_logits=True).numpy()
                for mode in ("BICUBIC", "BILINEAR")}
    np.testing.assert_allclose(got, want["BICUBIC"], rtol=1e-5, atol=1e-5)
    assert np.abs(got - want["BILINEAR"]).max() > 1e-3  # the two resizes are told apart


def test_eval_transform_and_model_inputs_resize_as_asked():
    import torch

    ds = _images(n=3, side=37)
    x = torch.from_numpy(ds.items).permute(0, 3, 1, 2)
    for name, mode in (("bicubic", "BICUBIC"), ("nearest", "NEAREST"), ("bilinear", "BILINEAR")):
        want = _by_hand(x, 20, mode)
        assert torch.equal(eval_transform(20, MEAN, STD, name)(x), want), name
        model = torch.stack([ImageTensors(ds, 20, MEAN, STD, interpolation=name)[i][0] for i in range(3)])
        assert torch.equal(model, want), name
    assert not torch.equal(_by_hand(x, 20, "BICUBIC"), _by_hand(x, 20, "BILINEAR"))
    assert torch.equal(eval_transform(20, MEAN, STD)(x), _by_hand(x, 20, "BILINEAR"))  # the default
    with pytest.raises(DataError, match="lanczos"):
        ImageTensors(ds, 20, MEAN, STD, interpolation="lanczos")


def test_training_crops_use_the_interpolation():
    from torchvision.transforms import InterpolationMode, v2

    from transferlab._runtime import run_controls

    ds = _images(n=2)
    for level, kind in (("default", v2.RandomResizedCrop), ("light", v2.Resize)):
        with run_controls(augment=level):
            t = ImageTensors(ds, 16, MEAN, STD, augment=True, interpolation="bicubic").transform
        resize = t.transforms[0]
        assert isinstance(resize, kind) and resize.interpolation == InterpolationMode.BICUBIC, level


@pytest.mark.parametrize("given,want", [("bicubic", "bicubic"), ("BICUBIC", "bicubic"), ("nearest", "nearest"),
                                        ("bilinear", "bilinear"), ("random", "bilinear"), ("", "bilinear"),
                                        (None, "bilinear")])
def test_timm_cfg_values(given, want):
    from transferlab.zoo._sources import _timm_interpolation

    assert _timm_interpolation({} if given is None else {"interpolation": given}) == want
