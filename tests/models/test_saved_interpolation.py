"""A fitted image model records its resize interpolation with its preprocessing (size, mean, std): ``predict`` and
``evaluate`` resize as it was trained (bicubic for a timm model whose pretrained config says so), and a card written
before the field existed reads as bilinear, the resize such models were trained with."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transferlab.data import Dataset

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # timm test_efficientnet's (ImageNet) normalisation


def _images(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, (n, 40, 40, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, ..., 0] += 120
    return Dataset(f"imgs{seed}", "image", x, y, ("a", "b"))


def _probs_by_hand(net, ds, mode):
    """Softmax of ``net`` on ``ds`` preprocessed with torchvision v2 written out here (not transferlab's code)."""
    import torch
    from torchvision.transforms import InterpolationMode, v2

    pipe = v2.Compose([v2.Resize((16, 16), interpolation=getattr(InterpolationMode, mode), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    with torch.no_grad():
        return torch.softmax(net.eval()(pipe(torch.from_numpy(ds.items).permute(0, 3, 1, 2))), 1).numpy()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_timm_weights):
    from transferlab.fit import fit

    out = tmp_path_factory.mktemp("interp") / "m"
    fit(_images(8, 0), f"timm:test_efficientnet@{tiny_timm_weights}", "head", epochs=1, image_size=16,
        batch_size=8, out=out)
    return out


def test_a_fitted_model_predicts_with_its_recorded_interpolation(fitted):
    from transferlab.models import load, load_classifier, predict, read_card

    card = read_card(fitted)
    assert card.interpolation == "bicubic" and card.preprocessing()["interpolation"] == "bicubic"
    assert json.loads((fitted / "metrics.json").read_text())["interpolation"] == "bicubic"
    assert json.loads((fitted / "config.json").read_text())["pretrained_cfg"]["interpolation"] == "bicubic"  # timm's
    test = _images(6, 1)
    _, p, _ = predict(fitted, test)
    net = load(fitted)
    np.testing.assert_allclose(p, _probs_by_hand(net, test, "BICUBIC"), atol=1e-6)
    assert np.abs(p - _probs_by_hand(net, test, "BILINEAR")).max() > 1e-5  # a bilinear resize is told apart
    assert load_classifier(fitted, test).interpolation == "bicubic"


def test_a_card_without_the_field_reads_as_bilinear(fitted, tmp_path):
    from transferlab.models import load, load_classifier, predict, read_card

    old = tmp_path / "old"
    shutil.copytree(fitted, old)
    raw = json.loads((old / "transferlab.json").read_text())
    del raw["interpolation"]  # as a card written before the field existed
    (old / "transferlab.json").write_text(json.dumps(raw))
    assert read_card(old).interpolation is None and read_card(old).preprocessing()["interpolation"] == "bilinear"
    test = _images(6, 1)
    _, p, _ = predict(old, test)
    np.testing.assert_allclose(p, _probs_by_hand(load(old), test, "BILINEAR"), atol=1e-6)
    assert load_classifier(old, test).interpolation == "bilinear"


def test_a_builtin_model_is_built_bilinear():
    from transferlab.models import build
    from transferlab.zoo import resolve_model

    built = build(resolve_model("builtin:small_resnet_shapes"), 2)
    assert built.preprocessing() == {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3,
                                     "interpolation": "bilinear"}
