"""Merging fit outputs: LoRA through B @ A, heads kept per task, the output loads like a fit, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.merge.conftest import state_of

from transferlab._io import mark_owned
from transferlab.errors import TransferlabError
from transferlab.merge import merge, merge_models


def _base_state(zoo: dict) -> dict[str, torch.Tensor]:
    return state_of(zoo["root"] / "base.safetensors")


def test_lora_task_vector_is_the_full_product(merge_zoo: dict) -> None:
    """task_arithmetic(lam=1) of [LoRA, base-copy] = base + peft's own merged update (merge_and_unload), which
    includes a 3x3 stem convolution and 1x1 convolutions."""
    from transferlab.models import load

    base = _base_state(merge_zoo)
    lora_dir = merge_zoo["dirs"][2]
    merged = merge("task_arithmetic", merge_zoo["ref"], [lora_dir, base], lam=1.0)
    folded = load(lora_dir).merge_and_unload().state_dict()
    changed = 0
    for k, v in merged.items():
        torch.testing.assert_close(v, folded[k], rtol=1e-5, atol=1e-6)
        changed += int(not torch.equal(v, base[k]))
    cfg = json.loads((lora_dir / "adapter_config.json").read_text())
    assert "conv_stem" in cfg["target_modules"]
    assert changed >= len(cfg["target_modules"])  # every adapted weight moved


def test_average_of_full_fine_tunes_is_the_mean(merge_zoo: dict) -> None:
    a, b = (state_of(d / "model.safetensors") for d in merge_zoo["dirs"][:2])
    merged = merge("average", merge_zoo["ref"], merge_zoo["dirs"][:2])
    assert "classifier.weight" not in merged  # heads are not merged
    for k, v in merged.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a[k] + b[k]) / 2)
        else:
            assert torch.equal(v, _base_state(merge_zoo)[k])  # integer counters: the base's


def test_merged_directory_keeps_every_head(merge_zoo: dict, tmp_path: Path) -> None:
    from transferlab.models import evaluate as evaluate_model
    from transferlab.models import load

    out = tmp_path / "merged"
    r = merge_models("ties", merge_zoo["ref"], merge_zoo["dirs"], out, names=["a", "b", "lora"])
    assert set(r.heads) == {"a", "b", "lora"}
    assert r.heads["b"]["class_names"] == ["w", "x", "y", "z"]
    from transferlab.models import read_card

    assert read_card(merge_zoo["dirs"][0]).interpolation == "bicubic"  # test_efficientnet's timm cfg says so
    assert read_card(out).interpolation == "bicubic"  # the merge predicts as its fits were trained
    backbone = merge("ties", merge_zoo["ref"], merge_zoo["dirs"])
    for name, d in zip(["a", "b"], merge_zoo["dirs"][:2], strict=True):
        net = load(out, head=name)
        own = state_of(d / "model.safetensors")
        sd = net.state_dict()
        assert torch.equal(sd["classifier.weight"], own["classifier.weight"])
        for k, v in backbone.items():
            assert torch.equal(sd[k], v)
    lora_head = load(out, head="lora").state_dict()["classifier.weight"]
    adapter = state_of(merge_zoo["dirs"][2] / "adapter_model.safetensors")
    assert torch.equal(lora_head, adapter["base_model.model.classifier.weight"])
    acc = evaluate_model(out, merge_zoo["b"], split="train", head="b")
    assert acc["n"] == len(merge_zoo["b"]) and 0 <= acc["accuracy"] <= 1
    with pytest.raises(TransferlabError, match="no head 'c'; its heads: a, b, lora"):
        load(out, head="c")


def test_output_loads_in_timm(merge_zoo: dict, tmp_path: Path) -> None:
    import timm

    out = tmp_path / "m"
    merge_models("average", merge_zoo["ref"], merge_zoo["dirs"][:2], out)
    cfg = json.loads((out / "transferlab.json").read_text())
    net = timm.create_model(cfg["architecture"]["name"], pretrained=True, num_classes=cfg["num_classes"],
                            pretrained_cfg_overlay={"file": str(out / "model.safetensors"),
                                                    "num_classes": cfg["num_classes"]})
    want = state_of(out / "model.safetensors")
    assert all(torch.equal(v, want[k]) for k, v in net.state_dict().items())


def test_cli_merge_and_predict_with_a_head(merge_zoo: dict, tmp_path: Path) -> None:
    from transferlab.cli import main

    out = tmp_path / "cli"
    d = [str(x) for x in merge_zoo["dirs"][:2]]
    assert main(["merge", "--method", "dare", "--base", merge_zoo["ref"], "--models", *d, "--out", str(out),
                 "--option", "p=0.3", "--names", "a", "b", "--quiet"]) == 0
    cfg = json.loads((out / "transferlab.json").read_text())
    assert cfg["merge"]["method"] == "dare" and cfg["merge"]["options"]["drop"] == 0.3
    preds = tmp_path / "p.csv"
    imgs = merge_zoo["root"] / "imgs_b"
    assert main(["predict", str(out), str(imgs), "--split", "train", "--head", "b", "--output-file", str(preds)]) == 0
    rows = preds.read_text().splitlines()[1:]
    assert rows and all(r.split(",")[3] in {"w", "x", "y", "z"} for r in rows)
    assert main(["merge", "--method", "dare", "--base", merge_zoo["ref"], "--models", *d, "--out", str(out)]) == 2


# -- bad input ----------------------------------------------------------------------------------------------------------


def _write(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _toy(seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"l1.weight": torch.randn(4, 3, generator=g, dtype=dtype), "l2.weight": torch.randn(5, generator=g,
                                                                                                 dtype=dtype)}


def test_architecture_mismatch_names_the_tensor(tmp_path: Path) -> None:
    odd = _toy(2)
    odd["l2.weight"] = torch.zeros(6)
    with pytest.raises(TransferlabError, match=r"tensor l2.weight has shape \[6\] there and \[5\] in the base"):
        merge("average", _toy(0), [_toy(1), odd])
    extra = {**_toy(2), "l3.weight": torch.zeros(1)}
    with pytest.raises(TransferlabError, match="tensor l3.weight is only in"):
        merge("average", _toy(0), [_toy(1), extra])


def test_different_fit_architectures_are_refused(merge_zoo: dict, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    cfg = json.loads((merge_zoo["dirs"][0] / "transferlab.json").read_text())
    cfg["architecture"] = {"library": "timm", "name": "test_resnet"}
    (other / "config.json").write_text(json.dumps(cfg))
    (other / "model.safetensors").write_bytes((merge_zoo["dirs"][0] / "model.safetensors").read_bytes())
    with pytest.raises(TransferlabError, match="is a test_resnet but .* is a test_efficientnet"):
        merge("average", merge_zoo["ref"], [merge_zoo["dirs"][0], other])


def test_dtype_mix_is_refused() -> None:
    with pytest.raises(TransferlabError, match="dtype mix: tensor l1.weight is float16 in model 2"):
        merge("average", _toy(0), [_toy(1), _toy(2, torch.float16)])


def test_nan_in_a_checkpoint_is_refused_and_leaves_no_output(tmp_path: Path) -> None:
    bad = _toy(2)
    bad["l2.weight"][3] = float("nan")
    paths = [_write(tmp_path / "a.safetensors", _toy(1)), _write(tmp_path / "b.safetensors", bad)]
    out = tmp_path / "out"
    with pytest.raises(TransferlabError, match="b.safetensors.*tensor l2.weight holds NaN or inf"):
        merge_models("task_arithmetic", _write(tmp_path / "base.safetensors", _toy(0)), paths, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors", "base.safetensors"]


def test_single_model_and_missing_base_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TransferlabError, match="nothing to merge: 1 fine-tuned model given"):
        merge("average", _toy(0), [_toy(1)])
    with pytest.raises(TransferlabError, match="needs the base model"):
        merge("average", None, [_toy(1), _toy(2)])
    with pytest.raises(TransferlabError, match="base: .*nope does not exist"):
        merge("average", tmp_path / "nope", [_toy(1), _toy(2)])


def test_pickle_checkpoints_need_trust(tmp_path: Path) -> None:
    torch.save(_toy(1), tmp_path / "a.pt")
    torch.save({"state_dict": _toy(2)}, tmp_path / "b.pt")
    with pytest.raises(TransferlabError, match="a.pt is a pickle checkpoint.*--trust-pickle"):
        merge("average", _toy(0), [tmp_path / "a.pt", tmp_path / "b.pt"])
    got = merge("average", _toy(0), [tmp_path / "a.pt", tmp_path / "b.pt"], trust_pickle=True)
    torch.testing.assert_close(got["l1.weight"], (_toy(1)["l1.weight"] + _toy(2)["l1.weight"]) / 2)


def test_existing_output_needs_overwrite_and_a_foreign_directory_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ("average", _toy(0), [_toy(1), _toy(2)], out)
    with pytest.raises(TransferlabError, match=r"transferlab did not write \(keep.txt\)"):
        merge_models(*args)
    with pytest.raises(TransferlabError, match="transferlab did not write"):
        merge_models(*args, overwrite=True)
    assert (out / "keep.txt").read_text() == "x"
    merge_models("average", _toy(0), [_toy(1), _toy(2)], tmp_path / "out3")
    with pytest.raises(TransferlabError, match="already holds .*--overwrite"):  # our own: needs --overwrite
        merge_models(*args[:3], tmp_path / "out3")
    out2 = tmp_path / "out2"
    merge_models("task_arithmetic", _toy(0), [_toy(1), _toy(2)], out2)
    merge_models(*args[:3], out2, overwrite=True)  # our own earlier merge: replaced
    assert json.loads((out2 / "merge.json").read_text())["method"] == "average"
    killed = tmp_path / "killed_fit"  # a killed run's checkpoints: a merge resumes nothing, so it needs --overwrite
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "checkpoints" / "checkpoint.pt").write_bytes(b"x")
    mark_owned(killed / "checkpoints")
    with pytest.raises(TransferlabError, match="another transferlab run's files.*--overwrite"):
        merge_models(*args[:3], killed)
    assert (killed / "checkpoints" / "checkpoint.pt").is_file()
    merge_models(*args[:3], killed, overwrite=True)
    assert (killed / "merge.json").is_file() and not (killed / "checkpoints").exists()
    assert np.allclose(state_of(out2 / "model.safetensors")["l2.weight"].numpy(),
                       ((_toy(1)["l2.weight"] + _toy(2)["l2.weight"]) / 2).numpy())


def test_models_with_extra_modules_are_refused(merge_zoo: dict, tmp_path: Path) -> None:
    d = tmp_path / "adapter_fit"
    d.mkdir()
    cfg = json.loads((merge_zoo["dirs"][0] / "transferlab.json").read_text())
    cfg["method"] = "adapter"
    cfg["structure"] = {"kind": "adapters", "config": {}, "image_size": 32}  # format 2 says it as data
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes((merge_zoo["dirs"][0] / "model.safetensors").read_bytes())
    with pytest.raises(TransferlabError, match=r"has the model structure 'adapters' \(fitted with 'adapter'\), which the base"):
        merge("average", merge_zoo["ref"], [merge_zoo["dirs"][0], d])


def test_adapter_over_another_base_is_refused(merge_zoo: dict, tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    other.write_bytes((merge_zoo["root"] / "base.safetensors").read_bytes())
    with pytest.raises(TransferlabError, match="adapter trained on timm:test_efficientnet@.*base.safetensors, but "
                                               "the base is timm:test_efficientnet@.*other.safetensors"):
        merge("average", f"timm:test_efficientnet@{other}", merge_zoo["dirs"][1:])


def test_half_precision_models_merge_in_float32_and_stay_half() -> None:
    base = {"w": torch.zeros(3, dtype=torch.float16)}
    models = [{"w": torch.tensor([1e-3, 2.0, 3.0], dtype=torch.float16)},
              {"w": torch.tensor([2e-3, 4.0, 5.0], dtype=torch.float16)}]
    got = merge("task_arithmetic", base, models, lam=0.5)["w"]
    assert got.dtype == torch.float16
    want = 0.5 * (models[0]["w"].float() + models[1]["w"].float())
    torch.testing.assert_close(got, want.half())


def test_dora_is_folded_by_peft_before_merging(merge_zoo: dict, tmp_path: Path) -> None:
    """DoRA's update is not B @ A alone (magnitude vector): such adapters are folded by peft, then differenced."""
    from transferlab.fit import fit
    from transferlab.models import load

    d = tmp_path / "dora"
    fit(merge_zoo["a"], merge_zoo["ref"], "dora", out=d, epochs=1, image_size=32, lr=1e-2)
    base = _base_state(merge_zoo)
    got = merge("task_arithmetic", merge_zoo["ref"], [d, base], lam=1.0)
    folded = load(d).merge_and_unload().state_dict()
    assert any(not torch.equal(folded[k], base[k]) for k in got if base[k].is_floating_point())
    for k, v in got.items():
        torch.testing.assert_close(v, folded[k], rtol=1e-5, atol=1e-6)


def test_batch_norm_statistics_are_averaged_by_every_method(merge_zoo: dict) -> None:
    """Task arithmetic on running variances can drive them negative; every method averages them instead."""
    a, b = (state_of(d / "model.safetensors") for d in merge_zoo["dirs"][:2])
    stats = [k for k in a if k.endswith((".running_mean", ".running_var"))]
    assert stats
    for method, opts in [("task_arithmetic", {"lam": 3.0}), ("ties", {}), ("dare", {"p": 0.5})]:
        got = merge(method, merge_zoo["ref"], merge_zoo["dirs"][:2], **opts)
        for k in stats:
            torch.testing.assert_close(got[k], (a[k] + b[k]) / 2)


def test_reset_norms_reestimates_batch_norm_statistics(merge_zoo: dict, tmp_path: Path) -> None:
    """First batch norm: its running mean becomes the mean of the per-batch channel means of its input (one batch per
    task here), computed here with a hook on the merged network."""
    from transferlab.models import load, model_inputs

    out = tmp_path / "m"
    data = [merge_zoo["a"], merge_zoo["b"]]
    with pytest.raises(TransferlabError, match="reset_norms re-estimates batch-norm statistics on data"):
        merge_models("ties", merge_zoo["ref"], merge_zoo["dirs"][:2], out, reset_norms=True)
    merge_models("ties", merge_zoo["ref"], merge_zoo["dirs"][:2], out, data=data, reset_norms=True)
    plain = tmp_path / "plain"
    merge_models("ties", merge_zoo["ref"], merge_zoo["dirs"][:2], plain)
    net = load(plain)
    seen: list[torch.Tensor] = []
    net.bn1.register_forward_hook(lambda m, i, o: seen.append(i[0].mean(dim=(0, 2, 3))))
    with torch.no_grad():
        for ds in data:
            x = torch.stack([x for x, _ in model_inputs(net, ds)])
            net(x)
    got = state_of(out / "model.safetensors")
    torch.testing.assert_close(got["bn1.running_mean"], (seen[0] + seen[1]) / 2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got["bn1.running_mean"], state_of(plain / "model.safetensors")["bn1.running_mean"])
    assert json.loads((out / "transferlab.json").read_text())["merge"]["norm_statistics"] == "re-estimated on the data"


class _Body(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 5)
        self.c1 = torch.nn.Conv1d(3, 4, 3)
        self.c2 = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _Body()


def test_lora_patterns_rslora_and_conv1d_match_peft(tmp_path: Path) -> None:
    """alpha_pattern keys are regular expressions (peft's matching), rsLoRA scales by alpha / sqrt(r), Conv1d and
    1x1 Conv2d updates have their own shapes: all equal to peft's merge_and_unload."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = _Net()
    base = {k: v.detach().clone() for k, v in net.state_dict().items()}
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["fc", "c1", "c2"], init_lora_weights=False,
                     alpha_pattern={r"body\.f.": 24}, rank_pattern={"c2": 2}, use_rslora=True)
    peft_model = get_peft_model(copy.deepcopy(net), cfg)
    peft_model.save_pretrained(str(tmp_path / "lora"))
    folded = peft_model.merge_and_unload().state_dict()
    got = merge("task_arithmetic", base, [tmp_path / "lora", base], lam=1.0)
    for k, v in got.items():
        torch.testing.assert_close(v, folded[k], rtol=1e-5, atol=1e-6)
        if k.endswith("weight"):
            assert not torch.equal(v, base[k]), k
    other = {("net." + k): v for k, v in base.items()}  # a base whose tensors have other names
    with pytest.raises(TransferlabError, match=r"updates body\.\w+\.weight, which the base has no tensor for"):
        merge("average", other, [tmp_path / "lora", other])


def test_state_dicts_that_require_grad_merge() -> None:
    a, b, c = (torch.nn.Linear(4, 3) for _ in range(3))
    got = merge("ties", dict(a.named_parameters()), [dict(b.named_parameters()), dict(c.named_parameters())])
    assert got["weight"].shape == (3, 4) and not got["weight"].requires_grad


def test_reset_norms_needs_fit_directories(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    states = [{k: v + i for k, v in net.state_dict().items()} for i in range(3)]
    with pytest.raises(TransferlabError, match="reset_norms: it runs the merged model, so the models must be"):
        merge_models("average", states[0], states[1:], tmp_path / "o", data=["x", "y"], reset_norms=True)
    assert not (tmp_path / "o").exists()
