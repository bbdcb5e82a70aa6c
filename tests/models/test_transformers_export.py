"""Text fits and merges leave transferlab (issue 29): ``to_transformers`` writes a folder that plain transformers (and
peft over it, for LoRA) opens, and the code its README.md shows gives transferlab's predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import make_text_dataset

from transferlab.errors import TransferlabError
from transferlab.models import load, predict, read_card, to_transformers

METHODS = ["head", "finetune", "lora"]


@pytest.fixture(scope="module")
def fits(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> dict[str, Path]:
    from transferlab.fit import fit

    root = tmp_path_factory.mktemp("fits")
    data = make_text_dataset(12, "train", seed=0)
    out = {}
    for m in METHODS:
        fit(data, f"hf:{tiny_text_model_dir}", m, out=root / m, epochs=1, lr=1e-2, max_length=32,
            **({"r": 2} if m == "lora" else {}))
        out[m] = root / m
    return out


def _texts() -> list[str]:
    return [str(t) for t in make_text_dataset(4, "test", seed=5).items] + ["", "sport " * 60]


def _run_card(out: Path, texts: list[str]) -> dict:
    """Run the Python blocks of ``out/README.md`` as a reader would (DIR, BASE and texts given)."""
    code = "\n".join(re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S))
    ns: dict = {"DIR": str(out), "texts": texts}
    if (out / "adapter_config.json").is_file():
        base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
        ns["BASE"] = str((out / base).resolve())
    exec(compile(code, str(out / "README.md"), "exec"), ns)
    return ns


def _transferlab_logits(d: Path, texts: list[str], head: str | None = None) -> torch.Tensor:
    net = load(d, head=head)
    enc = net.transferlab_tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        return net({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})


def _no_machine_paths(d: Path, *paths: Path) -> None:
    for f in d.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".md", ".txt"):
            text = f.read_text()
            for p in paths:
                assert str(p) not in text, f"{f} holds the absolute path {p}"
    assert "[More Information Needed]" not in (d / "README.md").read_text()


@pytest.mark.parametrize("method", METHODS)
def test_export_predicts_as_transferlab(method, fits, tmp_path, tiny_text_model_dir):
    d = fits[method]
    out = to_transformers(d, tmp_path / "hf")
    texts = _texts()
    idx, _, card = predict(d, texts)
    ns = _run_card(out, texts)  # AutoTokenizer + AutoModelForSequenceClassification (+ PeftModel) only
    agreement = float(np.mean(ns["logits"].argmax(-1).numpy() == idx))
    diff = float((ns["logits"] - _transferlab_logits(d, texts)).abs().max())
    print(f"{method}: agreement {agreement:.0%} on {len(texts)} texts, max |logit difference| {diff:.2e}")
    assert agreement == 1.0 and diff < 1e-5
    assert ns["labels"] == [card["class_names"][i] for i in idx]
    cfg = json.loads((out / ("adapter_config.json" if method == "lora" else "config.json")).read_text())
    if method == "lora":  # every adapter tensor loads by its own name (the issue: 0 of 74)
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import load_file
        from transformers import AutoModelForSequenceClassification

        base = AutoModelForSequenceClassification.from_pretrained(ns["BASE"], num_labels=3)
        loaded = get_peft_model_state_dict(PeftModel.from_pretrained(base, str(out)))
        saved = load_file(str(out / "adapter_model.safetensors"))
        assert set(saved) == set(loaded) and all(torch.equal(saved[k], loaded[k]) for k in saved)
        base_path = cfg["base_model_name_or_path"]  # relative to the folder, never this machine's absolute path
        assert cfg["modules_to_save"] == ["classifier"] and not Path(base_path).is_absolute()
        assert (out / base_path).resolve() == tiny_text_model_dir.resolve()
    else:  # transformers' config, never a transferlab card
        assert cfg["model_type"] == "bert" and cfg["num_labels"] == 3 and "architecture" not in cfg
        assert cfg["id2label"] == {str(i): c for i, c in enumerate(card["class_names"])}
        assert cfg["transferlab"]["pooling"] == "mean"
        with pytest.raises(TransferlabError, match="not a transferlab model"):
            read_card(out)
    _no_machine_paths(out, tmp_path, tiny_text_model_dir)
    _no_machine_paths(d, d.parent, tiny_text_model_dir)
    assert (d / "tokenizer.json").is_file() and not (d / "config.json").exists()
    assert "to_transformers(DIR, OUT)" in (d / "README.md").read_text()


def test_merged_text_model_exports_each_head(fits, tmp_path, tiny_text_ref):
    from transferlab.merge import merge_models

    merged = tmp_path / "merged"
    merge_models("average", tiny_text_ref, [fits["head"], fits["finetune"]], merged, names=["a", "b"])
    assert "[More Information Needed]" not in (merged / "README.md").read_text()
    out = to_transformers(merged, tmp_path / "hf", head="b")
    texts = _texts()
    idx, _, _ = predict(merged, texts, head="b")
    ns = _run_card(out, texts)
    assert np.mean(ns["logits"].argmax(-1).numpy() == idx) == 1.0
    assert float((ns["logits"] - _transferlab_logits(merged, texts, head="b")).abs().max()) < 1e-5


def test_methods_with_added_modules_are_refused(tmp_path, tiny_text_ref):
    from transferlab.fit import fit

    fit(make_text_dataset(6, "train", seed=0), tiny_text_ref, "adapter", out=tmp_path / "a", epochs=1, max_length=32)
    with pytest.raises(TransferlabError, match="opens in transferlab only"):
        to_transformers(tmp_path / "a", tmp_path / "hf")
    assert "opens in transferlab only" in (tmp_path / "a" / "README.md").read_text()
