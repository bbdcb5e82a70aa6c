"""Text fits and merges leave transferlab (issue 29): a text fit or merge folder opens itself in plain transformers
(``AutoTokenizer`` + ``AutoModelForSequenceClassification``, the pooling in the folder's ``modeling_transferlab.py``)
and a text LoRA in plain peft, with transferlab's predictions; folders written before (``encoder``/``head`` module
names) still load as they did, and ``to_transformers`` writes them (and a merge's other heads) in the same form."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import make_text_dataset

from transferlab.errors import TransferlabError
from transferlab.models import load, predict, read_card, to_transformers

METHODS = ["head", "finetune", "lora"]
OLD = Path(__file__).parent / "data" / "text_format2"


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
    """Run the Python blocks of ``out/README.md``'s transformers section as a reader would (DIR, BASE, texts given)."""
    readme = (out / "README.md").read_text()
    section = readme[readme.index("## In transformers"):]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    ns: dict = {"DIR": str(out), "texts": texts}
    if (out / "adapter_config.json").is_file():
        base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
        ns["BASE"] = str((out / base).resolve())
    exec(compile(code, str(out / "README.md"), "exec"), ns)
    return ns


def _transferlab_logits(d: Path, texts: list[str], head: str | None = None, max_length: int = 32) -> torch.Tensor:
    net = load(d, head=head)
    enc = net.transferlab_tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return net({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})


def _agreement(d: Path, hf: Path, texts: list[str], head: str | None = None, max_length: int = 32) -> tuple[float, float]:
    """(share of texts with transferlab's class, max |logit difference|) of ``hf``'s README code against ``d``."""
    idx, _, card = predict(d, texts, head=head)
    ns = _run_card(hf, texts)
    assert ns["labels"] == [card["class_names"][i] for i in idx]
    agreement = float(np.mean(ns["logits"].argmax(-1).numpy() == idx))
    diff = float((ns["logits"] - _transferlab_logits(d, texts, head, max_length)).abs().max())
    return agreement, diff


def _no_machine_paths(d: Path, *paths: Path) -> None:
    for f in d.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".md", ".txt", ".py"):
            text = f.read_text()
            for p in paths:
                assert str(p) not in text, f"{f} holds the absolute path {p}"
    assert "[More Information Needed]" not in (d / "README.md").read_text()


@pytest.mark.parametrize("method", METHODS)
def test_fit_folder_opens_in_transformers_with_its_predictions(method, fits, tiny_text_model_dir):
    d = fits[method]
    agreement, diff = _agreement(d, d, _texts())  # AutoTokenizer + AutoModelForSequenceClassification (+ PeftModel)
    print(f"{method} fit folder: agreement {agreement:.0%} on {len(_texts())} texts, max |logit diff| {diff:.2e}")
    assert agreement == 1.0 and diff < 1e-5
    cfg = json.loads((d / "config.json").read_text())  # transformers' config beside transferlab's card
    card = read_card(d)
    assert cfg["model_type"] == "bert" and cfg["num_labels"] == 3 and "architecture" not in cfg
    assert cfg["id2label"] == {str(i): c for i, c in enumerate(card.class_names)}
    assert cfg["auto_map"] == {"AutoModelForSequenceClassification":
                               "modeling_transferlab.TransferlabForSequenceClassification"}
    assert cfg["transferlab"]["pooling"] == "mean" and card.architecture["modules"] == {"encoder": "bert",
                                                                                     "head": "classifier"}
    assert (d / "tokenizer.json").is_file() and (d / "modeling_transferlab.py").is_file()
    _no_machine_paths(d, d.parent, tiny_text_model_dir)
    if method == "lora":
        assert not (d / "model.safetensors").exists()  # the adapter only: no copy of the base
    else:  # the weights once, under transformers' names
        assert sorted(p.name for p in d.glob("*.safetensors")) == ["model.safetensors"]


def test_lora_fit_loads_in_plain_peft_over_transformers_class(fits, tiny_text_model_dir):
    """The issue: 0 of 74 adapter tensors loaded. Every one loads by its own name over transformers' own class."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    d = fits["lora"]
    adapter = json.loads((d / "adapter_config.json").read_text())
    base_path = adapter["base_model_name_or_path"]  # relative to the folder, never this machine's absolute path
    assert not Path(base_path).is_absolute() and (d / base_path).resolve() == tiny_text_model_dir.resolve()
    assert adapter["modules_to_save"] == ["classifier"]
    base = AutoModelForSequenceClassification.from_pretrained(str(d / base_path), num_labels=3)
    loaded = get_peft_model_state_dict(PeftModel.from_pretrained(base, str(d)))
    saved = load_file(str(d / "adapter_model.safetensors"))
    assert len(saved) > 10 and set(saved) == set(loaded) and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_full_fit_without_custom_code(fits):
    """Without trust_remote_code: AutoModel is the fine-tuned encoder; transformers' own classifier class loads the
    same weights (only its pooler is new), which is why the card asks for the folder's class."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    d = fits["finetune"]
    net = load(d)
    encoder = AutoModel.from_pretrained(str(d))
    assert type(encoder).__name__ == "BertModel"
    ours = net.encoder.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in encoder.state_dict().items() if not k.startswith("pooler."))
    plain = AutoModelForSequenceClassification.from_pretrained(str(d))
    assert type(plain).__name__ == "BertForSequenceClassification"
    assert torch.equal(plain.classifier.weight, net.classifier.weight)


def test_merged_text_model_opens_in_transformers_and_exports_each_head(fits, tmp_path, tiny_text_ref):
    from transferlab.merge import merge_models

    merged = tmp_path / "merged"
    merge_models("average", tiny_text_ref, [fits["head"], fits["finetune"]], merged, names=["a", "b"])
    assert "[More Information Needed]" not in (merged / "README.md").read_text()
    agreement, diff = _agreement(merged, merged, _texts(), head="a")  # the folder itself: its first head
    print(f"merge folder (head a): agreement {agreement:.0%}, max |logit diff| {diff:.2e}")
    assert agreement == 1.0 and diff < 1e-5
    out = to_transformers(merged, tmp_path / "hf", head="b")
    agreement, diff = _agreement(merged, out, _texts(), head="b")
    print(f"merge exported (head b): agreement {agreement:.0%}, max |logit diff| {diff:.2e}")
    assert agreement == 1.0 and diff < 1e-5
    with pytest.raises(TransferlabError, match="not a transferlab model"):
        read_card(out)


@pytest.mark.parametrize(("name", "head"), [("fit_finetune", None), ("fit_lora", None), ("merge_avg", "a"),
                                            ("merge_avg", "b")])
def test_old_text_folders_load_with_the_logits_they_had(name, head):
    from safetensors import safe_open
    from safetensors.torch import load_file

    texts = json.loads(safe_open(str(OLD / "reference.safetensors"), "pt").metadata()["texts"])
    ref = load_file(str(OLD / "reference.safetensors"))[name + (f"/{head}" if head else "")]
    assert "modules" not in read_card(OLD / name).architecture  # written before the names were transformers'
    got = _transferlab_logits(OLD / name, texts, head, max_length=24)
    assert torch.allclose(got, ref, atol=1e-5), float((got - ref).abs().max())


@pytest.mark.parametrize(("name", "head"), [("fit_finetune", None), ("fit_lora", None), ("merge_avg", "b")])
def test_old_text_folders_export_to_transformers(name, head, tmp_path):
    d = tmp_path / "old"
    shutil.copytree(OLD, d)  # the LoRA's base is its sibling, as recorded
    out = to_transformers(d / name, tmp_path / "hf", head=head)
    agreement, diff = _agreement(d / name, out, _texts(), head=head, max_length=24)
    print(f"old {name} exported: agreement {agreement:.0%}, max |logit diff| {diff:.2e}")
    assert agreement == 1.0 and diff < 1e-5
    _no_machine_paths(out, tmp_path)


def test_methods_with_added_modules_are_refused(tmp_path, tiny_text_ref):
    from transferlab.fit import fit

    fit(make_text_dataset(6, "train", seed=0), tiny_text_ref, "adapter", out=tmp_path / "a", epochs=1, max_length=32)
    with pytest.raises(TransferlabError, match="opens in transferlab only"):
        to_transformers(tmp_path / "a", tmp_path / "hf")
    assert "opens in transferlab only" in (tmp_path / "a" / "README.md").read_text()
    assert not (tmp_path / "a" / "config.json").exists()  # its weights are not a transformers model's


def test_old_text_fits_merge_as_they_did(tmp_path):
    """A merge reads text fits saved before transformers' names under those names: the same average of the same
    two old fits, over a base built now, gives the logits the old merge had."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from transferlab.merge import merge_models

    d = tmp_path / "old"
    shutil.copytree(OLD, d)
    out = tmp_path / "merged"
    merge_models("average", f"hf:{d / 'base'}", [d / "fit_finetune", d / "fit_lora"], out, names=["a", "b"])
    assert read_card(out).architecture["modules"] == {"encoder": "bert", "head": "classifier"}
    texts = json.loads(safe_open(str(OLD / "reference.safetensors"), "pt").metadata()["texts"])
    ref = load_file(str(OLD / "reference.safetensors"))
    for head in ("a", "b"):
        got = _transferlab_logits(out, texts, head, max_length=24)
        assert torch.allclose(got, ref[f"merge_avg/{head}"], atol=1e-5), head


def test_a_fit_initialised_from_an_old_text_fit_starts_from_its_weights(tmp_path):
    from transferlab.fit import fit

    d = tmp_path / "old"
    shutil.copytree(OLD, d)
    r = fit(make_text_dataset(6, "train", seed=2), f"hf:{d / 'base'}", "head", init=d / "fit_finetune",
            out=tmp_path / "again", epochs=1, max_length=24)
    old = load(d / "fit_finetune").state_dict()
    new = r.model.state_dict()
    frozen = [k for k in old if k.startswith("encoder.")]
    assert frozen and all(torch.equal(old[k], new["bert." + k[len("encoder."):]]) for k in frozen)


def test_transferlab_never_runs_the_folders_modeling_file(fits, tmp_path):
    """docs/failures.md: modeling_transferlab.py is for transformers (trust_remote_code=True); transferlab rebuilds
    from its card, so a hostile copy of the file runs nowhere in transferlab."""
    d = tmp_path / "ft"
    shutil.copytree(fits["finetune"], d)
    (d / "modeling_transferlab.py").write_text("raise SystemExit('hostile code ran')\n")
    idx, _, _ = predict(d, _texts())
    assert np.array_equal(idx, predict(fits["finetune"], _texts())[0])


@pytest.mark.parametrize(("pooling", "normalize"), [("cls", False), ("cls", True), ("mean", True)])
def test_every_pooling_opens_in_transformers(pooling, normalize, tmp_path, tiny_text_ref):
    """The folder's class pools as transferlab does for each pooling a fit can have (st: models: CLS, normalised)."""
    from transferlab.models import ModelCard, resolve, save_model
    from transferlab.models._text import build_text_classifier

    torch.manual_seed(0)
    net, tok = build_text_classifier(resolve(tiny_text_ref), 3)
    net.pooling, net.normalize = pooling, normalize
    net.architecture.update(pooling=pooling, normalize=normalize)
    card = ModelCard(model=tiny_text_ref, method="finetune", modality="text", architecture=net.architecture,
                     num_classes=3, class_names=["x", "y", "z"], max_length=32)
    save_model(tmp_path / "m", net.eval(), card, tok)
    agreement, diff = _agreement(tmp_path / "m", tmp_path / "m", _texts())
    assert agreement == 1.0 and diff < 1e-5
    assert json.loads((tmp_path / "m" / "config.json").read_text())["transferlab"]["pooling"] == pooling
