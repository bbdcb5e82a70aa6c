"""Outputs that load elsewhere: the card is transferlab.json; plain timm opens fit and merge outputs; peft adapters
name their base; adapter fits save only what they trained; no absolute path of this machine in what is written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import fit
from transferlab.merge import merge, merge_models
from transferlab.models import build, load, local_reference, peft_base_name, recorded_reference, resolve

FIT = {"epochs": 1, "image_size": 32, "batch_size": 64, "val_fraction": 0}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("builtin:digits").stratified_sample(40, seed=1)


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32)


@pytest.fixture(scope="module")
def local(tmp_path_factory, digits):
    """Everything from absolute paths: base weights in root/w, an image folder, fits in root/runs."""
    import timm
    from safetensors.torch import save_file
    from tests.conftest import write_image_folder

    root = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(0)
    (root / "w").mkdir()
    net = timm.create_model("test_efficientnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "w" / "base.safetensors"))
    ref = f"timm:test_efficientnet@{root / 'w' / 'base.safetensors'}"
    imgs = str(write_image_folder(root / "imgs", n_per_class=8))
    runs = root / "runs"
    fits = {
        "head": fit(imgs, ref, "head", out=runs / "head", **FIT),
        "adapter": fit(digits, ref, "adapter", out=runs / "adapter", r=4, **FIT),
        "lora": fit(digits, ref, "lora", out=runs / "lora", r=4, **FIT),
    }
    fits["init"] = fit(imgs, ref, "bitfit", out=runs / "init", init=runs / "head", **FIT)
    merge_models("task_arithmetic", ref, [runs / "head", runs / "init"], root / "merged", names=["a", "b"])
    return {"root": root, "ref": ref, "runs": runs, "fits": fits, "imgs": imgs}


def _logits(net, x):
    with torch.no_grad():
        return net.eval()(x)


# -- 1. the card's name --------------------------------------------------------------------------------------------


def test_the_card_is_transferlab_json_and_config_json_is_timms(local):
    d = local["runs"] / "head"
    card = json.loads((d / "transferlab.json").read_text())
    timm_cfg = json.loads((d / "config.json").read_text())
    assert card["method"] == "head" and card["architecture"] == {"library": "timm", "name": "test_efficientnet"}
    assert timm_cfg["architecture"] == "test_efficientnet" and timm_cfg["label_names"] == card["class_names"]
    assert timm_cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]


def test_a_foreign_config_json_alone_is_a_clear_error(local, tmp_path):
    d = tmp_path / "timm_only"
    shutil.copytree(local["runs"] / "head", d)
    (d / "transferlab.json").unlink()
    with pytest.raises(TransferlabError, match="no transferlab.json, and its config.json is not a transferlab model"):
        load(d)


def test_an_old_directory_with_the_card_as_config_json_still_loads(local, tmp_path, x):
    d = tmp_path / "old"
    shutil.copytree(local["runs"] / "head", d)
    (d / "transferlab.json").replace(d / "config.json")  # as transferlab wrote it before
    torch.testing.assert_close(_logits(load(d), x), _logits(load(local["runs"] / "head"), x), rtol=0, atol=0)


def test_refitting_the_same_model_into_its_output_is_recognised(local):
    with pytest.raises(TransferlabError, match="already holds this fit"):
        fit(local["imgs"], local["ref"], "head", out=local["runs"] / "head", **FIT)


# -- 2. plain timm ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["builtin:small_convnext_shapes", "builtin:small_vit_shapes"])
def test_a_head_fit_opens_in_plain_timm(model, digits, tmp_path, x):
    """timm's own loaders build the fitted network with our weights; the ViT's 32 px shape goes in model_args."""
    import timm

    out = tmp_path / "fit"
    fit(digits, model, "head", out=out, **FIT)
    want = _logits(load(out), x)
    net = timm.create_model(f"local-dir:{out}", pretrained=True)
    torch.testing.assert_close(_logits(net, x), want, rtol=0, atol=1e-5)
    assert net.pretrained_cfg["label_names"] == list(digits.class_names)
    card = json.loads((out / "transferlab.json").read_text())
    kwargs = card["architecture"].get("kwargs", {})
    assert json.loads((out / "config.json").read_text()).get("model_args", {}) == kwargs
    c = card["num_classes"]
    net = timm.create_model(card["architecture"]["name"], pretrained=True, num_classes=c, **kwargs,
                            pretrained_cfg_overlay={"file": str(out / "model.safetensors"), "num_classes": c})
    torch.testing.assert_close(_logits(net, x), want, rtol=0, atol=1e-5)


def test_a_merge_output_opens_in_plain_timm_with_its_first_head(local, x):
    import timm

    out = local["root"] / "merged"
    net = timm.create_model(f"local-dir:{out}", pretrained=True)
    torch.testing.assert_close(_logits(net, x), _logits(load(out), x), rtol=0, atol=1e-5)
    torch.testing.assert_close(_logits(net, x), _logits(load(out, head="a"), x), rtol=0, atol=1e-5)
    assert net.pretrained_cfg["label_names"] == json.loads((out / "transferlab.json").read_text())["class_names"]


def test_outputs_that_are_not_a_whole_timm_network_have_no_timm_config(local):
    for name in ("adapter", "lora"):
        assert not (local["runs"] / name / "config.json").exists()


# -- 3. peft adapters name their base --------------------------------------------------------------------------------


def test_a_lora_adapter_names_its_base_and_loads_over_the_documented_one(digits, tmp_path, x):
    from peft import PeftModel

    out = tmp_path / "lora"
    fit(digits, "builtin:small_convnext_shapes", "lora", out=out, r=4, **FIT)
    card = json.loads((out / "transferlab.json").read_text())
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == card["model"] == "builtin:small_convnext_shapes"
    base = build(resolve(card["model"]), card["num_classes"]).net  # docs/models.md
    got = _logits(PeftModel.from_pretrained(base, str(out)), x)
    torch.testing.assert_close(got, _logits(load(out), x), rtol=0, atol=1e-6)


def test_peft_base_names():
    assert peft_base_name("timm:resnet18.a1_in1k") == "timm/resnet18.a1_in1k"
    assert peft_base_name("timm:resnet18") == "timm/resnet18.a1_in1k"  # timm's default tag
    assert peft_base_name("hf:bert-base-uncased") == "bert-base-uncased"
    assert peft_base_name("builtin:small_vit_shapes") == "builtin:small_vit_shapes"
    assert peft_base_name("timm:resnet18@../w/r18.safetensors") == "timm:resnet18@../w/r18.safetensors"


def test_a_local_lora_base_is_recorded_relative_to_the_adapter(local):
    adapter = json.loads((local["runs"] / "lora" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "timm:test_efficientnet@../../w/base.safetensors"


# -- 4. adapter fits save what they trained ---------------------------------------------------------------------------


def test_an_adapter_fit_saves_only_what_it_trained_and_reloads_exactly(local, x):
    d = local["runs"] / "adapter"
    r = local["fits"]["adapter"]
    card = json.loads((d / "transferlab.json").read_text())
    assert card["weights"] == "trained" and card["model"] == "timm:test_efficientnet@../../w/base.safetensors"
    full = sum(v.numel() * v.element_size() for v in r.model.state_dict().values())
    assert (d / "model.safetensors").stat().st_size < 0.25 * full
    assert (_logits(load(d), x) - _logits(r.model, x)).abs().max() <= 1e-6


def test_a_moved_adapter_fit_names_its_base_and_takes_base(local, tmp_path, x):
    moved = tmp_path / "elsewhere" / "deeper" / "adapter"
    shutil.copytree(local["runs"] / "adapter", moved)
    with pytest.raises(TransferlabError, match=r"base model 'timm:test_efficientnet@\.\./\.\./w/base\.safetensors'"
                                               r".*load\(DIR, base="):
        load(moved)
    want = _logits(load(local["runs"] / "adapter"), x)
    weights = local["root"] / "w" / "base.safetensors"
    torch.testing.assert_close(_logits(load(moved, base=weights), x), want, rtol=0, atol=0)
    torch.testing.assert_close(_logits(load(moved, base=f"timm:test_efficientnet@{weights}"), x), want, rtol=0,
                               atol=0)
    with pytest.raises(TransferlabError, match="is a test_convnext, but .* was fitted on a test_efficientnet"):
        load(moved, base="builtin:small_convnext_shapes")


def test_a_builtin_based_adapter_fit_loads_wherever_it_is_moved(digits, tmp_path, x):
    r = fit(digits, "builtin:small_convnext_shapes", "adapter", out=tmp_path / "a", r=4, **FIT)
    moved = tmp_path / "x" / "y"
    shutil.copytree(tmp_path / "a", moved)
    assert json.loads((moved / "transferlab.json").read_text())["weights"] == "trained"
    assert (_logits(load(moved), x) - _logits(r.model, x)).abs().max() <= 1e-6


def test_merging_an_adapter_fit_is_refused_clearly(local):
    with pytest.raises(TransferlabError, match=r"\(fitted with 'adapter'\), which the base architecture lacks"):
        merge("average", local["ref"], [local["runs"] / "head", local["runs"] / "adapter"])


# -- 5. no absolute path of this machine -------------------------------------------------------------------------------


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def test_no_written_json_holds_an_absolute_path_of_this_machine(local):
    root = local["root"]
    prefix = str(root.parent.parent)  # pytest's base temporary directory: every input lies under it
    files = [p for p in root.rglob("*.json")
             if p.parent.name in ("head", "adapter", "lora", "init", "merged") and "imgs" not in p.parts]
    assert {p.name for p in files} >= {"transferlab.json", "config.json", "metrics.json", "merge.json",
                                       "adapter_config.json"}
    for p in files:
        bad = [s for s in _strings(json.loads(p.read_text())) if s.startswith(prefix) or prefix in s]
        assert not bad, f"{p}: {bad}"
    card = json.loads((local["runs"] / "init" / "transferlab.json").read_text())
    assert card["init"] == "../head"
    merged = json.loads((root / "merged" / "transferlab.json").read_text())
    assert merged["model"] == merged["merge"]["base"] == "timm:test_efficientnet@../w/base.safetensors"
    assert merged["merge"]["models"] == ["../runs/head", "../runs/init"]
    assert merged["heads"]["a"]["source"] == "../runs/head"


def test_recorded_references_read_back_relative_to_the_directory(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "m.safetensors").write_bytes(b"")
    out = tmp_path / "runs" / "a"
    rec = recorded_reference(f"timm:resnet18@{tmp_path / 'w' / 'm.safetensors'}", out)
    assert rec == "timm:resnet18@../../w/m.safetensors"
    assert local_reference(rec, out) == f"timm:resnet18@{tmp_path / 'w' / 'm.safetensors'}"
    assert recorded_reference(str(tmp_path / "w"), out) == "../../w"
    assert recorded_reference(f"hf:{tmp_path / 'w'}", out) == "hf:../../w"
    for keep in ("builtin:small_vit_shapes", "timm:resnet18.a1_in1k", "hf:bert-base-uncased"):
        assert recorded_reference(keep, out) == keep == local_reference(keep, out)
