"""Devices, precision and threads (issue 28): one clear error for a device this machine lacks; features that agree
across code paths to a stated tolerance, so the feature cache is keyed without the device; bf16 extraction on the
CPU; fp16 refused on the CPU; the thread limit applied inside a runtime."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from transferlab._runtime import check_device, current_device, current_precision, resolve_device, runtime
from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.zoo import FeatureCache, extract_features, resolve_model

#: features of one model through two code paths on the CPU (the network in channels-last vs contiguous memory
#: format: other convolution kernels, other summation orders) agree to this, relative to the largest feature;
#: measured max |diff| / max |f| on 48 digits at 32 px: tiny EfficientNet 0, built-in EfficientNet-Lite0 3.4e-6,
#: small ConvNeXt 0 (float32 rounding)
FLOAT_TOLERANCE = 1e-5
#: bf16 autocast keeps 8 bits of mantissa; measured relative distance from fp32: tiny EfficientNet 9.0e-3, small
#: ConvNeXt 4.8e-3, EfficientNet-Lite0 9.9e-2 (its depthwise layers amplify the rounding): not a float tolerance,
#: hence bf16 features are cached apart from fp32's
BF16_TOLERANCE = 5e-2


@pytest.fixture(scope="module")
def digits():
    return load_dataset("builtin:digits", "train").stratified_sample(48, seed=0)


def test_a_device_this_machine_lacks_is_one_clear_error():
    import torch

    assert str(resolve_device("auto")) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert str(resolve_device("cpu")) == "cpu"
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(TransferlabError, match="unknown device"):
            check_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(TransferlabError, match=r"--device cuda: CUDA is not available here .*--device cpu"):
            resolve_device("cuda")
        with pytest.raises(TransferlabError, match="CUDA is not available"):
            with runtime(device="cuda:1"):
                pass  # refused on entry, before any work


def test_fit_with_a_missing_gpu_fails_before_any_work(tmp_path):
    import torch

    from transferlab.fit import fit

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TransferlabError, match="CUDA is not available"):
        fit("builtin:digits", "builtin:small_resnet_shapes", "head", out=tmp_path / "o", device="cuda")
    assert not (tmp_path / "o").exists()


def test_public_functions_take_device_precision_threads():
    from transferlab.distill import distill
    from transferlab.domain import adapt
    from transferlab.fit import fit
    from transferlab.models import evaluate, predict

    for fn in (fit, adapt, distill, predict, evaluate):
        params = inspect.signature(fn).parameters
        assert {"device", "precision", "threads"} <= set(params), fn.__name__


def test_features_agree_across_memory_formats_and_the_cache_key_ignores_the_device(tiny_model_ref, digits, tmp_path):
    b = resolve_model(tiny_model_ref)
    b.channels_last = False
    plain = extract_features(b, digits, image_size=32, cache=None, device="cpu").features
    b.channels_last = True
    other = extract_features(b, digits, image_size=32, cache=None, device="cpu").features
    scale = np.abs(plain).max()
    assert plain.dtype == np.float32 and np.abs(plain - other).max() <= FLOAT_TOLERANCE * scale
    cache = FeatureCache(tmp_path)
    a = extract_features(b, digits, image_size=32, cache=cache, device="cpu")
    c = extract_features(b, digits, image_size=32, cache=cache)  # the default device: the same entry
    assert c.cache_hit and a.meta["cache_key"] == c.meta["cache_key"]


def test_bf16_extraction_on_the_cpu_is_close_and_cached_apart(tiny_model_ref, digits, tmp_path):
    b = resolve_model(tiny_model_ref)
    cache = FeatureCache(tmp_path)
    f32 = extract_features(b, digits, image_size=32, cache=cache, device="cpu")
    bf16 = extract_features(b, digits, image_size=32, cache=cache, device="cpu", precision="bf16")
    assert bf16.features.dtype == np.float32 and np.isfinite(bf16.features).all()
    rel = np.abs(bf16.features - f32.features).max() / np.abs(f32.features).max()
    assert 0 < rel <= BF16_TOLERANCE  # it did run in bf16 (not equal), and is close
    assert bf16.meta["cache_key"] != f32.meta["cache_key"] and not bf16.cache_hit
    with pytest.raises(TransferlabError, match="fp16 runs on GPUs"):
        extract_features(b, digits, image_size=32, cache=None, device="cpu", precision="fp16")


def test_a_runtime_sets_device_precision_and_threads_and_restores_them():
    import torch

    before = torch.get_num_threads()
    with runtime(device="cpu", precision="bf16", threads=1):
        assert str(current_device()) == "cpu" and current_precision() == "bf16"
        with runtime(precision="fp32"):  # an inner runtime overrides what it names, keeps the rest
            assert current_precision() == "fp32" and str(current_device()) == "cpu"
        assert current_precision() == "bf16" and torch.get_num_threads() == 1
    assert current_precision() == "fp32" and torch.get_num_threads() == before
    with pytest.raises(TransferlabError, match="unknown precision"):
        with runtime(precision="fp8"):
            pass


def test_an_explicit_fp32_is_told_apart_from_no_precision():
    """On CUDA the loop trains in fp16 mixed precision by default; an explicit fp32 must turn that off, so the runtime
    tells 'asked for fp32' from 'asked for nothing'."""
    import torch

    from transferlab._runtime import requested_precision
    from transferlab.train import TrainConfig
    from transferlab.train._loop import resolve_precision

    assert requested_precision() is None
    with runtime(precision="fp32"):
        assert requested_precision() == "fp32"
        assert resolve_precision(TrainConfig(), torch.device("cuda")) == "fp32"
    assert resolve_precision(TrainConfig(), torch.device("cuda")) == "fp16"  # the default on CUDA, as before
    with runtime(precision="bf16"):
        assert resolve_precision(TrainConfig(), torch.device("cpu")) == "bf16"


def test_a_missing_model_folder_is_named_as_such(tmp_path):
    """A missing teacher or surrogate folder was reported as 'has no scheme' (issue 29)."""
    from transferlab.errors import ModelError

    with pytest.raises(ModelError, match=r"nope does not exist: give a model folder written by transferlab"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ModelError, match=r"f.txt is a file, not a model folder"):
        resolve_model(str(tmp_path / "f.txt"))
    with pytest.raises(ModelError, match="has no scheme"):
        resolve_model("resnet18")  # a bare name is still a missing scheme
