"""transferlab.models: the model card (format 2, format 1 still loads), save/load round trips, clear errors."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transferlab.errors import TransferlabError
from transferlab.models import ModelCard, load, read_card, save_model

FORMAT1 = Path(__file__).parent / "data" / "format1"


def _reference() -> dict[str, torch.Tensor]:
    return load_file(str(FORMAT1 / "reference.safetensors"))


@pytest.mark.parametrize("name", ["fit_adapter", "fit_lora"])
def test_format1_fits_load_with_the_logits_they_had(name):
    """Written by transferlab at 1bf8ea6 (format 1); the logits were computed by that commit's fit.load."""
    ref = _reference()
    net = load(FORMAT1 / name)
    with torch.no_grad():
        got = net(ref["input"])
    torch.testing.assert_close(got, ref[name], rtol=0, atol=1e-5)
    card = net.transferlab_config
    assert card["format"] == 1 and card["method"] == name.split("_")[1]


def test_format1_cards_translate_to_format2_fields():
    adapter, lora = read_card(FORMAT1 / "fit_adapter"), read_card(FORMAT1 / "fit_lora")
    assert adapter.weights == "state_dict" and adapter.structure["kind"] == "adapters"
    assert adapter.structure["image_size"] == 32
    assert lora.weights == "peft" and lora.structure == {}
    merged = read_card(FORMAT1 / "merge_ta")
    assert merged.weights == "state_dict" and set(merged.heads) == {"digits", "shapes"}


@pytest.mark.parametrize("head", ["digits", "shapes"])
def test_format1_merge_loads_each_head(head):
    ref = _reference()
    net = load(FORMAT1 / "merge_ta", head=head)
    with torch.no_grad():
        got = net(ref["input"])
    torch.testing.assert_close(got, ref[f"merge_ta/{head}"], rtol=0, atol=1e-5)
    assert net.transferlab_config["selected_head"] == head
    assert len(net.transferlab_config["class_names"]) == got.shape[1]


def test_format1_adapter_fit_rewritten_as_format2_loads_identically(tmp_path):
    """Loading a format-1 directory and saving it again gives a format-2 card with the same network."""
    ref = _reference()
    net = load(FORMAT1 / "fit_adapter")
    card = read_card(FORMAT1 / "fit_adapter").model_copy(update={"format": 2})
    save_model(tmp_path / "v2", net, card)
    raw = json.loads((tmp_path / "v2" / "transferlab.json").read_text())
    assert raw["format"] == 2 and raw["structure"]["kind"] == "adapters" and raw["weights"] == "state_dict"
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "v2")(ref["input"]), ref["fit_adapter"], rtol=0, atol=1e-5)


def _copy(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    shutil.copytree(FORMAT1 / name, d)
    return d


def test_unknown_keys_warn_and_still_load(tmp_path, caplog):
    d = _copy(tmp_path, "fit_adapter")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "from_the_future": 1}))
    with caplog.at_level(logging.WARNING):
        load(d)
    assert "from_the_future" in caplog.text


def test_newer_format_is_a_clear_error(tmp_path):
    d = _copy(tmp_path, "fit_adapter")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "format": 3}))
    with pytest.raises(TransferlabError, match="model format 3.*upgrade transferlab"):
        load(d)


def test_invalid_card_and_unknown_structure_are_clear_errors(tmp_path):
    d = _copy(tmp_path, "fit_adapter")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "num_classes": "many"}))
    with pytest.raises(TransferlabError, match="not a valid model card: num_classes"):
        load(d)
    (d / "config.json").write_text(json.dumps({**cfg, "format": 2, "weights": "state_dict",
                                               "structure": {"kind": "hypernetwork"}}))
    with pytest.raises(TransferlabError, match="unknown model structure 'hypernetwork'"):
        load(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(TransferlabError, match="config.json is not readable JSON"):
        load(d)


def test_missing_weights_and_unknown_head_are_clear_errors(tmp_path):
    d = _copy(tmp_path, "merge_ta")
    with pytest.raises(TransferlabError, match="no head 'cats'; its heads: digits, shapes"):
        load(d, head="cats")
    (d / "model.safetensors").unlink()
    with pytest.raises(TransferlabError, match="has no model.safetensors"):
        load(d)


def test_card_round_trip_keeps_every_field():
    card = ModelCard(model="timm:x", method="head", architecture={"library": "timm", "name": "x"}, num_classes=3,
                     class_names=["a", "b", "c"], image_size=32, mean=[0.5] * 3, std=[0.5] * 3,
                     structure={"kind": "adapters", "config": {"r": 4}, "image_size": 32})
    again = ModelCard.model_validate(json.loads(json.dumps(card.to_json())))
    assert again == card and again.format == 2
