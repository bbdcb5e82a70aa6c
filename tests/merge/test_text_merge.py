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


def test_heads_with_other_label_sets_stay_one_per_task_and_the_config_says_so(tiny_text_ref: str,
                                                                              tmp_path: Path) -> None:
    """Task b has two classes with other names: its head stays its own, and the folder's config.json (which
    transformers opens with task a's id2label) lists both heads and says their label sets differ; one tokenizer: no
    mergeability warning."""
    import json

    import numpy as np
    from transformers import AutoConfig

    from transferlab.data import Dataset
    from transferlab.fit import fit
    from transferlab.merge import merge_models
    from transferlab.models import predict

    a = make_text_dataset(8, seed=0)
    keep = np.flatnonzero(a.labels < 2)
    b = Dataset("b", "text", [a.items[i] for i in keep], a.labels[keep], ("neg", "pos"))
    fit(a, tiny_text_ref, "finetune", out=tmp_path / "a", epochs=1, lr=1e-3, max_length=32)
    fit(b, tiny_text_ref, "finetune", out=tmp_path / "b", epochs=1, lr=1e-3, max_length=32)
    r = merge_models("average", tiny_text_ref, [tmp_path / "a", tmp_path / "b"], tmp_path / "m", names=["a", "b"])
    assert r.mergeability.warnings == []
    heads = json.loads((tmp_path / "m" / "config.json").read_text())["transferlab_task_heads"]
    assert heads["default"] == "a" and heads["label_sets_differ"] is True and "label sets differ" in heads["note"]
    assert heads["heads"]["b"] == {"file": "heads/b.safetensors", "num_labels": 2, "id2label": {"0": "neg", "1": "pos"}}
    assert heads["heads"]["a"]["id2label"] == {str(i): c for i, c in enumerate(a.class_names)}
    assert AutoConfig.from_pretrained(str(tmp_path / "m")).num_labels == len(a.class_names)  # still opens
    _, probs, cfg = predict(tmp_path / "m", b, head="b")
    assert probs.shape == (len(b), 2) and cfg["class_names"] == ["neg", "pos"]
