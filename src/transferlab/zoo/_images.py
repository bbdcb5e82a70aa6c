"""Image loading and preprocessing: uint8 arrays or files -> normalised float batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import DataError


def _to_nhwc(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:  # [B, H, W] grey
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return arr


def read_image(path: object, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as RGB uint8 [H, W, 3] (resized to ``size`` = (W, H) when given). A file that cannot be
    decoded (truncated, corrupt, a decompression bomb) is a :class:`DataError` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != size:
                im = im.resize(size, Image.BILINEAR)
            return np.array(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {str(path)!r} ({type(exc).__name__}: {exc}); remove or fix it") from None


def _load_files(paths: list) -> np.ndarray:
    out: list[np.ndarray] = []
    for p in paths:  # a batch must be one shape before the tensor resize
        out.append(read_image(p, (out[0].shape[1], out[0].shape[0]) if out else None))
    return np.stack(out)


#: the resize interpolations transferlab applies (a model's pretrained config names one; bilinear when it names none)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def interpolation_mode(name: str) -> Any:
    """torchvision's ``InterpolationMode`` for one of :data:`INTERPOLATIONS`; another name is a :class:`DataError`."""
    from torchvision.transforms import InterpolationMode

    if name not in INTERPOLATIONS:
        raise DataError(f"unknown resize interpolation {name!r}: use one of {', '.join(INTERPOLATIONS)}")
    return {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
            "nearest": InterpolationMode.NEAREST}[name]


def eval_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...],
                   interpolation: str = "bilinear") -> Any:
    """The evaluation preprocessing of images, the one owner of it: uint8 RGB [..., 3, H, W] -> resized to
    ``size`` x ``size`` (``interpolation``: the model's own, bilinear by default; antialiased, rounded back to uint8
    as torchvision does), scaled to [0, 1] and normalised. The zoo's features and every adapted model's inputs
    (``models.ImageTensors`` without augmentation) go through it, so a ranking scores the very inputs a fine-tune
    trains and predicts on."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize((size, size), interpolation=interpolation_mode(interpolation), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def image_batches(ds: Dataset, indices: np.ndarray, *, batch_size: int, size: int, mean: tuple[float, ...],
                  std: tuple[float, ...], interpolation: str = "bilinear") -> Iterator[object]:
    """Yield float tensors [B, 3, size, size]: RGB, through :func:`eval_transform` (each file resized on its own,
    with ``interpolation``)."""
    import torch

    transform = eval_transform(size, mean, std, interpolation)
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        if isinstance(ds.items, np.ndarray):
            arr = _to_nhwc(ds.items[idx])
            x = transform(torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2))
        else:  # files of any sizes: each resized straight to the target, as the models' inputs are
            x = torch.stack([transform(torch.from_numpy(read_image(ds.items[i])).permute(2, 0, 1))
                             for i in idx])
        yield x.contiguous(memory_format=torch.channels_last)


def raw_pixels(ds: Dataset, indices: np.ndarray, max_side: int = 64) -> np.ndarray:
    """Flattened float pixels in [0, 1] (images larger than ``max_side`` are downsized first)."""
    if ds.modality == "array":
        return np.asarray(ds.items[indices], dtype=np.float64).reshape(len(indices), -1)
    if isinstance(ds.items, np.ndarray):
        arr = ds.items[indices]
    else:
        arr = _to_nhwc(_load_files([ds.items[i] for i in indices]))
    if max(arr.shape[1:3]) > max_side:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(_to_nhwc(arr))).permute(0, 3, 1, 2).float()
        arr = F.interpolate(x, size=(max_side, max_side), mode="bilinear", antialias=True).numpy()
    return np.asarray(arr, dtype=np.float64).reshape(len(indices), -1) / 255.0
