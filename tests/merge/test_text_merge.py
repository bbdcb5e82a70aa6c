"""Merging text models (transformers encoders through fit's TextClassifier): full fine-tune + LoRA, RegMean on the
encoder's Linear layers, one head per task, tokenizer carried over."""

from __future__ import annotations

from pathlib import Path

import torch
from tests.conftest import make_text_dataset


def test_text_models_merge_with_heads(tiny_text_ref: str, tmp_path: Path) -> None:
    from transferlab.fit import fit
    from transferlab.merge import merge, merge_models
    from transferlab.models import load, predict

    a = make_text_dataset(12, seed=0)
    b = make_text_dataset(12, seed=1)
    fit(a, tiny_text_ref, "finetune", out=tmp_path / "ft", epochs=1, lr=1e-3, max_length=32)
    fit(b, tiny_text_ref, "lora", out=tmp_path / "lora", epochs=1, lr=1e-2, max_length=32)
    dirs = [tmp_path / "ft", tmp_path / "lora"]
    out = tmp_path / "merged"
    merge_models("regmean", tiny_text_ref, dirs, out, data=[a, b], examples=16, names=["a", "b"])
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    rm = merge("regmean", tiny_text_ref, dirs, data=[a, b], examples=16)
    avg = merge("average", tiny_text_ref, dirs)
    q = "bert.encoder.layer.0.attention.self.query.weight"
    assert q in rm and not torch.allclose(rm[q], avg[q])  # a Linear layer: merged by RegMean, not averaged
    net = load(out, head="b")
    sd = net.state_dict()
    assert torch.equal(sd[q], rm[q])
    lora_head = load(dirs[1]).state_dict()["base_model.model.classifier.modules_to_save.default.weight"]
    assert torch.equal(sd["classifier.weight"], lora_head)
    pred, probs, cfg = predict(out, b, head="b")
    assert probs.shape == (len(b), 3) and cfg["class_names"] == list(b.class_names)
