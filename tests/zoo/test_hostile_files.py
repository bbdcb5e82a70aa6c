"""Weight files are judged by their content, not their name (issue 11): a pickle is refused unless trusted however it
is named and wherever it is given; a decoy .safetensors does not let a pickle through; damaged and non-finite
weights are refused at load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferlab.errors import ModelError, TransferlabError
from transferlab.zoo import resolve_model, weight_kind


@pytest.fixture
def state():
    import torch

    torch.manual_seed(0)
    return {"w": torch.randn(4, 3), "b": torch.zeros(4)}


def _pickle(path: Path, state: dict, legacy: bool = False) -> Path:
    import torch

    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def test_weight_kind_reads_the_content(tmp_path, state):
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "real.bin"))  # safetensors under a pickle name
    assert weight_kind(tmp_path / "real.bin") == "safetensors"
    for name, legacy in (("a.PTH", False), ("b.pth.tar", True), ("c.weights", False), ("d.safetensors", True)):
        assert weight_kind(_pickle(tmp_path / name, state, legacy)) == "pickle", name
    (tmp_path / "decoy.safetensors").write_bytes(b"not really")
    assert weight_kind(tmp_path / "decoy.safetensors") == "other"
    (tmp_path / "notes.txt").write_text("hello")
    assert weight_kind(tmp_path / "notes.txt") == "other"


@pytest.mark.parametrize("name", ["model.PTH", "model.pth.tar", "model.safetensors", "weights.dat"])
def test_timm_local_pickle_is_refused_whatever_its_name(tmp_path, state, name):
    p = _pickle(tmp_path / name, state, legacy=name.endswith(".tar"))
    with pytest.raises(ModelError, match="pickle weights.*--trust-pickle"):
        resolve_model(f"timm:test_efficientnet@{p}")


def test_hf_folder_with_a_decoy_safetensors_beside_a_pickle_is_refused(tmp_path, state):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (d / "model.safetensors").write_bytes(b"\x00" * 64)  # a decoy
    _pickle(d / "pytorch_model.bin", state)
    for scheme in ("hf", "st"):
        with pytest.raises(ModelError, match=r"pickle weights \(pytorch_model.bin\)"):
            resolve_model(f"{scheme}:{d}")


def test_hf_folder_with_real_safetensors_and_a_pickle_reads_safetensors_only(tmp_path, state):
    from safetensors.torch import save_file

    d = tmp_path / "hf"
    d.mkdir()
    save_file(state, str(d / "model.safetensors"))
    _pickle(d / "pytorch_model.bin", state)
    b = resolve_model(f"hf:{d}")
    assert b._safetensors_only
    assert not resolve_model(f"hf:{d}", trust_pickle=True)._safetensors_only


def test_merge_judges_files_by_content(tmp_path, state):
    from safetensors.torch import save_file

    from transferlab.merge import merge_models

    base = tmp_path / "base.safetensors"
    save_file(state, str(base))
    a = _pickle(tmp_path / "a.PTH", {k: v + 1 for k, v in state.items()})
    b = _pickle(tmp_path / "b.dat", {k: v + 2 for k, v in state.items()})
    with pytest.raises(TransferlabError, match="pickle checkpoint.*--trust-pickle"):
        merge_models("average", base, [a, b], tmp_path / "out")
    c = tmp_path / "c.bin"
    save_file({k: v + 3 for k, v in state.items()}, str(c))  # safetensors named .bin: read as safetensors
    d = tmp_path / "d.bin"
    save_file({k: v + 5 for k, v in state.items()}, str(d))
    merge_models("average", base, [c, d], tmp_path / "out2")
    from safetensors.torch import load_file

    assert np.allclose(load_file(str(tmp_path / "out2" / "model.safetensors"))["w"].numpy(),
                       (state["w"] + 4).numpy())


@pytest.fixture
def fitted(tmp_path_factory, tiny_model_ref):
    from transferlab.data import load_dataset
    from transferlab.fit import fit

    out = tmp_path_factory.mktemp("fit") / "m"
    ds = load_dataset("builtin:digits").stratified_sample(60)
    fit(ds, tiny_model_ref, "head", test=ds, out=out, epochs=1, image_size=32, val_fraction=0)
    return out


def test_truncated_and_non_finite_weights_are_refused_at_load(fitted, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from transferlab.models import evaluate, load

    trunc = tmp_path / "trunc"
    shutil.copytree(fitted, trunc)
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="damaged or not a safetensors file"):
        load(trunc)
    nan = tmp_path / "nan"
    shutil.copytree(fitted, nan)
    st = load_file(str(nan / "model.safetensors"))
    k = next(k for k, v in st.items() if v.is_floating_point())
    st[k] = torch.full_like(st[k], float("nan"))
    save_file(st, str(nan / "model.safetensors"))
    with pytest.raises(ModelError, match="non-finite weights"):
        evaluate(nan, "builtin:digits")


def test_non_finite_logits_are_refused_at_predict(fitted, monkeypatch):
    import torch

    from transferlab.data import load_dataset
    from transferlab.models import load, model_inputs, predict_logits

    net = load(fitted)
    with torch.no_grad():
        next(net.parameters()).fill_(float("inf"))
    ds = load_dataset("builtin:digits", "test").stratified_sample(20)
    with pytest.raises(ModelError, match="outputs are not finite"):
        predict_logits(net, model_inputs(net, ds), 8)
