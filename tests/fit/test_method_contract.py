"""Every registered fit method, on a tiny model: one training step, save, reload with identical logits, and a clear
error for an option it does not take. Registration enrols a method here."""

from __future__ import annotations

import importlib

import pytest
import torch

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import METHODS, fit, list_methods
from transferlab.fit._registry import method_modules
from transferlab.models import load, model_inputs


@pytest.fixture(scope="module")
def tiny():
    tr = load_dataset("builtin:digits").stratified_sample(40, seed=1)
    x = torch.stack([model_inputs_for_digits(tr)[i][0] for i in range(4)])
    return tr, x


def model_inputs_for_digits(ds):
    from transferlab.models import ImageTensors

    return ImageTensors(ds, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def scalearn_sources(tiny, tiny_timm_weights, tmp_path_factory):
    tr, _ = tiny
    ref = f"timm:test_efficientnet@{tiny_timm_weights}"
    root = tmp_path_factory.mktemp("sources")
    for seed in (0, 1):
        fit(tr, ref, "adapter", out=root / f"s{seed}", epochs=1, image_size=32, batch_size=64, val_fraction=0,
            seed=seed, r=4)
    return [str(root / "s0"), str(root / "s1")]


#: methods that need another backbone than the tiny EfficientNet (prefix tuning needs attention blocks)
MODEL_FOR = {"mam": "builtin:small_vit_shapes"}


def _options(method, request):
    return {"sources": request.getfixturevalue("scalearn_sources")} if method == "scalearn" else {}


@pytest.mark.parametrize("method", list_methods())
def test_one_step_save_reload_identical_logits(method, tiny, tiny_model_ref, tmp_path, request):
    tr, x = tiny
    opts = _options(method, request)
    r = fit(tr, MODEL_FOR.get(method, tiny_model_ref), method, out=tmp_path / "m", epochs=1, image_size=32, batch_size=64, val_fraction=0,
            **opts)
    assert r.metrics["epochs"] in (0, 1, 2)  # linear_probe: none in the loop; sparse: one per phase
    if METHODS.meta(method).get("default_lr") is not None:
        assert r.history and all(h["train_loss"] == h["train_loss"] for h in r.history)  # a step ran, finite
    loaded = load(tmp_path / "m")
    assert model_inputs(loaded, tr)[0][0].shape == x[0].shape
    with torch.no_grad():
        a, b = r.model(x), loaded(x)
    assert (a - b).abs().max() <= 1e-6
    assert loaded.transferlab_config["format"] == 2 and loaded.transferlab_config["method"] == method


@pytest.mark.parametrize("method", list_methods())
def test_unknown_option_is_a_clear_error(method, tiny, tiny_model_ref, request):
    tr, _ = tiny
    with pytest.raises(TransferlabError, match=rf"{method}: .*bogus_option"):
        fit(tr, MODEL_FOR.get(method, tiny_model_ref), method, epochs=1, image_size=32, batch_size=64, val_fraction=0,
            bogus_option=1,
            **_options(method, request))


def test_every_method_file_registers_a_method():
    """Methods are discovered from the package's files: each non-infrastructure module registers at least one."""
    before = set(list_methods())
    for m in method_modules():
        mod = importlib.import_module(m)
        mine = {n for n in before if METHODS.get(n).__module__ == mod.__name__}
        assert mine, f"{m} registers no fit method (add it to the infrastructure list in fit/_registry.py)"
    assert {"linear_probe", "sparse", "scalearn", "lora", "adapter", "finetune"} <= before
