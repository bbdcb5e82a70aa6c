"""Datasets from what users have in memory: numpy arrays ``(X, y)``, lists of strings or PIL images, a pandas
DataFrame, a torch ``Dataset`` yielding ``(x, y)``, a Hugging Face ``datasets.Dataset``. Every entry point that takes
a dataset reference (``rank``, ``fit``, ``predict``, ``evaluate``) takes these too, through :func:`as_dataset`.

In-memory data has no split of its own: it is used whole (``rank`` scores it, ``fit`` trains on it and holds out its
validation split; pass ``test=`` for a test accuracy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ._dataset import Dataset


def _labels(y: Any, class_names: Sequence[str] | None, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    from ._loaders import _encode_labels

    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be one-dimensional, got shape {y.shape}")
    if class_names is not None:
        if y.dtype.kind not in "iu":
            raise DataError(f"{name}: with class_names, labels must be integer indices, got {y.dtype}")
        return y.astype(np.int64), tuple(str(c) for c in class_names)
    return _encode_labels(list(y.tolist()), name)


def from_arrays(x: Any, y: Any, *, class_names: Sequence[str] | None = None, name: str = "arrays",
                split: str = "train") -> Dataset:
    """Images as a uint8 array ``[N, H, W]`` or ``[N, H, W, C]``, or features ``[N, ...]`` of any numeric dtype, with
    labels (integers, or any values: class names are their sorted strings)."""
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{name}: X holds {x.dtype} values; give numeric arrays (lists of texts or images have their "
                        "own constructors: Dataset.from_texts, Dataset.from_images)")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{name}: X holds NaN or infinite values; remove or impute them")
    labels, names = _labels(y, class_names, name)
    modality = "image" if x.dtype == np.uint8 and x.ndim in (3, 4) else "array"
    return Dataset(name, modality, x, labels, names, split, {"source": "memory"})


def from_texts(texts: Sequence[str], labels: Any, *, class_names: Sequence[str] | None = None, name: str = "texts",
               split: str = "train") -> Dataset:
    texts = [str(t) for t in texts]
    if not any(t.strip() for t in texts):
        raise DataError(f"{name}: every text is empty")
    y, names = _labels(labels, class_names, name)
    return Dataset(name, "text", texts, y, names, split, {"source": "memory"})


def from_images(images: Sequence[Any], labels: Any, *, class_names: Sequence[str] | None = None,
                name: str = "images", split: str = "train") -> Dataset:
    """PIL images (of one size: they become one uint8 array) or image file paths."""
    from pathlib import Path

    y, names = _labels(labels, class_names, name)
    if all(isinstance(im, (str, Path)) for im in images):
        return Dataset(name, "image", [Path(p) for p in images], y, names, split, {"source": "memory"})
    arrays = [np.asarray(im.convert("RGB") if hasattr(im, "convert") else im, dtype=np.uint8) for im in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{name}: the images have {len(shapes)} different sizes (e.g. {sorted(shapes)[:2]}); resize "
                        "them to one size, or pass their file paths")
    return Dataset(name, "image", np.stack(arrays), y, names, split, {"source": "memory"})


def from_pandas(df: Any, *, label_column: str = "label", text_column: str = "text", path_column: str = "path",
                name: str = "dataframe", split: str = "train") -> Dataset:
    """A DataFrame with a label column and a text column (texts) or a path column (image files)."""
    if label_column not in df.columns:
        raise DataError(f"{name}: no column {label_column!r} (columns: {', '.join(map(str, df.columns))})")
    if df[label_column].isna().any():
        rows = [int(i) for i in np.flatnonzero(df[label_column].isna().to_numpy())]
        raise DataError(f"{name}: {len(rows)} row(s) have no label, e.g. row {rows[0]}")
    if text_column in df.columns:
        return from_texts(df[text_column].astype(str).tolist(), df[label_column].to_numpy(), name=name, split=split)
    if path_column in df.columns:
        return from_images(df[path_column].astype(str).tolist(), df[label_column].to_numpy(), name=name, split=split)
    raise DataError(f"{name}: needs a {text_column!r} column (texts) or a {path_column!r} column (image files) next to "
                    f"{label_column!r}")


def from_torch(dataset: Any, *, class_names: Sequence[str] | None = None, name: str | None = None,
               split: str = "train") -> Dataset:
    """A map-style torch ``Dataset`` of ``(x, y)``: PIL images, image tensors ``[C, H, W]`` (uint8, or floats in
    [0, 1] as ``ToTensor`` gives), or feature tensors. Read once into memory."""
    name = name or type(dataset).__name__
    xs, ys = [], []
    for i in range(len(dataset)):
        x, y = dataset[i]
        xs.append(x)
        ys.append(int(y))
    names = class_names or getattr(dataset, "classes", None)
    if xs and hasattr(xs[0], "convert"):  # PIL
        return from_images(xs, np.asarray(ys), class_names=names, name=name, split=split)
    arr = np.stack([x.numpy() if hasattr(x, "numpy") else np.asarray(x) for x in xs])
    if arr.ndim == 4 and arr.shape[1] in (1, 3):  # [N, C, H, W] images
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.rint(arr * 255.0), 0, 255)
        arr = arr.astype(np.uint8).transpose(0, 2, 3, 1)
    return from_arrays(arr, np.asarray(ys), class_names=names, name=name, split=split)


def from_hf(dataset: Any, *, label_column: str = "label", text_column: str | None = None,
            image_column: str | None = None, name: str | None = None, split: str = "train") -> Dataset:
    """A Hugging Face ``datasets.Dataset`` with a label column and a text or image column (found by name when not
    given: ``text``/``sentence`` or ``image``/``img``); class names from a ``ClassLabel`` feature."""
    cols = list(dataset.column_names)
    text_column = text_column or next((c for c in ("text", "sentence") if c in cols), None)
    image_column = image_column or next((c for c in ("image", "img") if c in cols), None)
    feature = dataset.features.get(label_column) if hasattr(dataset, "features") else None
    names = getattr(feature, "names", None)
    name = name or getattr(getattr(dataset, "info", None), "dataset_name", None) or "hf"
    if label_column not in cols:
        raise DataError(f"{name}: no column {label_column!r} (columns: {', '.join(cols)})")
    if text_column is not None and image_column is None:
        return from_texts(dataset[text_column], dataset[label_column], class_names=names, name=name, split=split)
    if image_column is not None:
        return from_images(dataset[image_column], dataset[label_column], class_names=names, name=name, split=split)
    raise DataError(f"{name}: name its text or image column (text_column=..., image_column=...); columns: "
                    f"{', '.join(cols)}")


def as_dataset(obj: Any, split: str = "train") -> Dataset | None:
    """``obj`` as a :class:`Dataset` when it is data in memory; None when it is a reference to load."""
    from pathlib import Path

    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, (str, Path)):
        return None
    if isinstance(obj, tuple) and len(obj) == 2:
        x, y = obj
        if isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x):
            return from_texts(x, y, split=split)
        if isinstance(x, (list, tuple)) and x and hasattr(x[0], "convert"):
            return from_images(x, y, split=split)
        return from_arrays(x, y, split=split)
    mod = type(obj).__module__
    if mod.startswith("pandas"):
        return from_pandas(obj, split=split)
    if mod.startswith("datasets"):
        return from_hf(obj, split=split)
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and any(
            c.__module__.startswith(("torch", "torchvision")) for c in type(obj).__mro__):
        return from_torch(obj, split=split)
    raise DataError(f"cannot use a {type(obj).__name__} as a dataset: give a reference (builtin:NAME, a folder, a "
                    "CSV/JSONL/NPZ file), a Dataset, (X, y) arrays, (texts, labels), (PIL images, labels), a pandas "
                    "DataFrame, a torch Dataset or a Hugging Face datasets.Dataset")
