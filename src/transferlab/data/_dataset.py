"""The one dataset abstraction: items + integer labels + class names + a content fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DataError, few

Modality = Literal["image", "text", "array"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset split.

    ``items`` is, by modality:

    - ``"image"``: a list of image file paths, or a uint8 array ``[N, H, W]`` / ``[N, H, W, C]``;
    - ``"text"``: a list of strings;
    - ``"array"``: a numeric array ``[N, ...]``.

    ``labels`` are int64 in ``[0, len(class_names))``. ``fingerprint`` is a SHA-256 of the content (item bytes, labels,
    class names), so a renamed copy of the same data shares cached features and an edited file does not.
    """

    name: str
    modality: Modality
    items: Any
    labels: np.ndarray
    class_names: tuple[str, ...]
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1:
            raise DataError(f"{self.name}: labels must be one-dimensional, got shape {labels.shape}")
        if len(self.items) != len(labels):
            raise DataError(
                f"{self.name}: {len(self.items)} items but {len(labels)} labels; give exactly one label per item"
            )
        if len(labels) == 0:
            raise DataError(f"{self.name} ({self.split} split) is empty: it holds no labelled examples")
        if labels.dtype.kind not in "iu":
            raise DataError(f"{self.name}: labels must be integers, got dtype {labels.dtype}")
        if labels.min() < 0 or labels.max() >= len(self.class_names):
            raise DataError(
                f"{self.name}: labels must lie in [0, {len(self.class_names)}) (one per class name); "
                f"found range [{labels.min()}, {labels.max()}]"
            )
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def __len__(self) -> int:
        return len(self.labels)

    # -- data in memory (transferlab.data._memory) -----------------------------------------------------------------
    @staticmethod
    def from_arrays(x: Any, y: Any, **kw: Any) -> Dataset:
        """Images (uint8 ``[N, H, W(, C)]``) or features ``[N, ...]`` with labels."""
        from ._memory import from_arrays

        return from_arrays(x, y, **kw)

    @staticmethod
    def from_texts(texts: Sequence[str], labels: Any, **kw: Any) -> Dataset:
        from ._memory import from_texts

        return from_texts(texts, labels, **kw)

    @staticmethod
    def from_images(images: Sequence[Any], labels: Any, **kw: Any) -> Dataset:
        """PIL images of one size, or image file paths."""
        from ._memory import from_images

        return from_images(images, labels, **kw)

    @staticmethod
    def from_pandas(df: Any, **kw: Any) -> Dataset:
        """A DataFrame with ``label`` and ``text`` (or ``path``) columns (names are options)."""
        from ._memory import from_pandas

        return from_pandas(df, **kw)

    @staticmethod
    def from_torch(dataset: Any, **kw: Any) -> Dataset:
        """A torch ``Dataset`` of ``(x, y)``: PIL images, image tensors or feature tensors."""
        from ._memory import from_torch

        return from_torch(dataset, **kw)

    @staticmethod
    def from_hf(dataset: Any, **kw: Any) -> Dataset:
        """A Hugging Face ``datasets.Dataset`` (``label`` and a text or image column)."""
        from ._memory import from_hf

        return from_hf(dataset, **kw)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    @cached_property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.modality}\0{len(self)}\0".encode())
        h.update("\0".join(self.class_names).encode())
        h.update(self.labels.astype("<i8").tobytes())
        if isinstance(self.items, np.ndarray):
            arr = np.ascontiguousarray(self.items)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
        else:
            for item in self.items:
                if isinstance(item, Path):
                    h.update(_file_digest(item))
                else:
                    h.update(str(item).encode("utf-8"))
                    h.update(b"\0")
        return h.hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray, *, name: str | None = None) -> Dataset:
        idx = np.asarray(indices, dtype=np.int64)
        items = self.items[idx] if isinstance(self.items, np.ndarray) else [self.items[i] for i in idx]
        return Dataset(name or self.name, self.modality, items, self.labels[idx], self.class_names, self.split,
                       dict(self.meta))

    def stratified_sample(self, n: int, seed: int = 0) -> Dataset:
        """A deterministic, class-stratified subset of ``n`` examples (the whole set if ``n >= len(self)``).

        Every class keeps at least ``min(2, its size)`` examples so the result stays rankable.
        """
        if n <= 0:
            raise DataError(f"--limit must be positive, got {n}")
        if n >= len(self):
            return self
        counts = self.class_counts()
        present = np.flatnonzero(counts)
        if n < 2 * len(present):
            raise DataError(
                f"--limit {n} is too small for {len(present)} classes: keep at least 2 examples per class "
                f"(--limit {2 * len(present)} or more)"
            )
        quota = np.floor(counts * n / len(self)).astype(int)
        quota[present] = np.maximum(quota[present], np.minimum(2, counts[present]))
        rng = np.random.default_rng(seed)
        # hand out what is left (or take back the excess) by largest remainder, deterministically
        order = np.argsort(-(counts * n / len(self) - quota), kind="stable")
        diff = n - quota.sum()
        i = 0
        while diff != 0:
            c = order[i % len(order)]
            if diff > 0 and quota[c] < counts[c]:
                quota[c] += 1
                diff -= 1
            elif diff < 0 and quota[c] > min(2, counts[c]):
                quota[c] -= 1
                diff += 1
            i += 1
        chosen = [rng.choice(np.flatnonzero(self.labels == c), quota[c], replace=False) for c in present]
        return self.subset(np.sort(np.concatenate(chosen)))

    def info(self) -> dict[str, Any]:
        counts = self.class_counts()
        nz = counts[counts > 0]
        return {
            "name": self.name,
            "split": self.split,
            "modality": self.modality,
            "size": len(self),
            "num_classes": self.num_classes,
            "class_counts": {c: int(n) for c, n in zip(self.class_names, counts, strict=True)},
            "imbalance_ratio": float(nz.max() / nz.min()) if len(nz) else None,
            "fingerprint": self.fingerprint,
            **({"skipped": self.meta["skipped"]} if self.meta.get("skipped") else {}),
        }


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def check_rankable(ds: Dataset) -> None:
    """Fail early, with the fix, on data that no transferability metric can score."""
    counts = ds.class_counts()
    present = np.flatnonzero(counts)
    if len(present) < 2:
        only = ds.class_names[present[0]] if len(present) else "?"
        raise DataError(
            f"{ds.name} has a single class ({only!r}): ranking needs at least two classes to tell apart; "
            "add examples of other classes"
        )
    if len(ds) < ds.num_classes:
        raise DataError(
            f"{ds.name} has {len(ds)} examples but {ds.num_classes} classes (N < C): add examples or drop classes"
        )
    singles = [ds.class_names[c] for c in present if counts[c] == 1]
    if singles:
        raise DataError(
            f"{ds.name}: {len(singles)} class(es) have a single example ({few(map(repr, singles))}); every class needs at "
            "least 2 for cross-validated metrics: add examples or remove those classes"
        )


def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """A stratified validation split carved from the training split (deterministic)."""
    if fraction <= 0:
        return ds, None
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(ds.labels):
        idx = np.flatnonzero(ds.labels == c)
        k = int(round(fraction * len(idx)))
        if len(idx) >= 3 and k >= 1:
            val.extend(rng.choice(idx, k, replace=False))
    if not val:
        return ds, None
    val_idx = np.sort(np.array(val))
    train_idx = np.setdiff1d(np.arange(len(ds)), val_idx)
    return ds.subset(train_idx), ds.subset(val_idx)
