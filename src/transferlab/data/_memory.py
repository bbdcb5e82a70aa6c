"""Datasets from what users have in memory: numpy arrays ``(X, y)``, lists of strings or PIL images, a pandas
DataFrame, a torch ``Dataset`` yielding ``(x, y)``, a Hugging Face ``datasets.Dataset``. Every entry point that takes
a dataset reference (``rank``, ``fit``, ``predict``, ``evaluate``) takes these too, and sentence pairs as
``(texts_a, texts_b, labels)``, through :func:`as_dataset`.

In-memory data has no split of its own: it is used whole (``rank`` scores it, ``fit`` trains on it and holds out its
validation split; pass ``test=`` for a test accuracy)."""

from __future__ import annotations

from typing import Any

from ..errors import DataError
from ._dataset import Dataset, from_arrays, from_hf, from_images, from_pandas, from_texts, from_torch


def as_dataset(obj: Any, split: str = "train") -> Dataset | None:
    """``obj`` as a :class:`Dataset` when it is data in memory; None when it is a reference to load."""
    from pathlib import Path

    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, (str, Path)):
        return None
    if isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(t, str) for t in (*obj[0], *obj[1])):
        from ._pairs import from_pairs

        return from_pairs(obj[0], obj[1], obj[2], split=split)  # (texts a, texts b, labels): sentence pairs
    if isinstance(obj, tuple) and len(obj) == 2:
        x, y = obj
        if isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x):
            return from_texts(x, y, split=split)
        if isinstance(x, (list, tuple)) and x and hasattr(x[0], "convert"):
            return from_images(x, y, split=split)
        return from_arrays(x, y, split=split)
    mod = type(obj).__module__
    if mod.startswith("pandas") and "text" not in obj.columns and {"text_a", "text_b", "label"} <= set(obj.columns):
        from ._pairs import from_pairs

        return from_pairs(obj["text_a"].astype(str).tolist(), obj["text_b"].astype(str).tolist(),
                          obj["label"].to_numpy(), name="dataframe", split=split)
    if mod.startswith("pandas"):
        return from_pandas(obj, split=split)
    if mod.startswith("datasets"):
        return from_hf(obj, split=split)
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and any(
            c.__module__.startswith(("torch", "torchvision")) for c in type(obj).__mro__):
        return from_torch(obj, split=split)
    raise DataError(f"cannot use a {type(obj).__name__} as a dataset: give a reference (builtin:NAME, a folder, a "
                    "CSV/JSONL/NPZ file), a Dataset, (X, y) arrays, (texts, labels), (PIL images, labels), a pandas "
                    "DataFrame, (texts a, texts b, labels) pairs, a torch Dataset or a Hugging Face datasets.Dataset")
