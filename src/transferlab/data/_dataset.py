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
from ._quality import QUALITY, check_quality

Modality = Literal["image", "text", "array"]
#: ``meta`` key of a group id per example: :func:`split_validation` keeps a group on one side
GROUPS = "groups"
#: ``meta`` entries with one value per item (a table's row numbers, identifiers, a quality column, groups: lists or
#: arrays): a subset keeps those of its items
_PER_ITEM = ("rows", "ids", "text_a", "text_b", QUALITY, GROUPS)


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
        if self.meta.get(QUALITY) is not None:  # one value in [0, 1] per item (transferlab.data._quality)
            object.__setattr__(self, "meta", {**self.meta, QUALITY: check_quality(self.meta[QUALITY], len(labels),
                                                                                    self.name)})

    def __len__(self) -> int:
        return len(self.labels)

    # -- data in memory (the functions below; transferlab.data._memory dispatches to them) -----------------------------------------------------------------
    @staticmethod
    def from_arrays(x: Any, y: Any, **kw: Any) -> Dataset:
        """Images (uint8 ``[N, H, W(, C)]``) or features ``[N, ...]`` with labels."""
        return from_arrays(x, y, **kw)

    @staticmethod
    def from_texts(texts: Sequence[str], labels: Any, **kw: Any) -> Dataset:
        return from_texts(texts, labels, **kw)

    @staticmethod
    def from_images(images: Sequence[Any], labels: Any, **kw: Any) -> Dataset:
        """PIL images of one size, or image file paths."""
        return from_images(images, labels, **kw)

    @staticmethod
    def from_pandas(df: Any, **kw: Any) -> Dataset:
        """A DataFrame with ``label`` and ``text`` (or ``path``) columns (names are options)."""
        return from_pandas(df, **kw)

    @staticmethod
    def from_torch(dataset: Any, **kw: Any) -> Dataset:
        """A torch ``Dataset`` of ``(x, y)``: PIL images, image tensors or feature tensors."""
        return from_torch(dataset, **kw)

    @staticmethod
    def from_hf(dataset: Any, **kw: Any) -> Dataset:
        """A Hugging Face ``datasets.Dataset`` (``label`` and a text or image column)."""
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
        meta = {k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]) if k in _PER_ITEM
                and isinstance(v, (list, np.ndarray)) else v for k, v in self.meta.items()}
        return Dataset(name or self.name, self.modality, items, self.labels[idx], self.class_names, self.split, meta)

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


def validation_indices(labels: np.ndarray, fraction: float, seed: int,
                       groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` of :func:`split_validation`: ``fraction`` of every class with at least 3 examples
    (deterministic for a seed); ``val_idx`` is empty when no class gives one. ``groups`` (one id per example:
    the rotations of one image, the frames of one video): whole groups go to one side, ``fraction`` of the groups
    of every class (a group's class: its first example's)."""
    if groups is not None:
        first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)[1:]
        _, val_groups = validation_indices(np.asarray(labels)[first], fraction, seed)
        val_idx = np.flatnonzero(np.isin(inverse, val_groups))
        return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx
    rng = np.random.default_rng(seed)
    val: list[int] = []
    if fraction > 0:
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            k = int(round(fraction * len(idx)))
            if len(idx) >= 3 and k >= 1:
                val.extend(rng.choice(idx, k, replace=False))
    val_idx = np.sort(np.array(val, dtype=int))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx


def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """A stratified validation split carved from the training split (deterministic); examples that share a
    ``meta["groups"]`` id (:data:`GROUPS`) stay on one side."""
    train_idx, val_idx = validation_indices(ds.labels, fraction, seed, ds.meta.get(GROUPS))
    if not len(val_idx):
        return ds, None
    return ds.subset(train_idx), ds.subset(val_idx)


# ------------------------------------------------------------------------------------------------ labels
def _rows_list(rows: Sequence[int], first_line: int) -> str:
    """``"rows 3, 7, 9 and 12 more"``: at most a few examples and a count (an error stays one readable line)."""
    shown = ", ".join(str(r + first_line) for r in rows[:5])
    return f"{'row' if len(rows) == 1 else 'rows'} {shown}" + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _encode_labels(raw: Sequence[Any], source: str, first_line: int = 1) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as class indices and sorted class names. A missing label (an empty cell, a short CSV row, a JSON
    null) is refused with its row numbers (``first_line``: the file line of the first example), never turned into a
    class named "None"."""
    values = [None if v is None else str(v).strip() for v in raw]
    bad = [i for i, v in enumerate(values) if v is None or v == "" or v.lower() == "nan"]
    if bad:
        raise DataError(f"{source}: {_rows_list(bad, first_line)} {'has' if len(bad) == 1 else 'have'} no label; "
                        "every example needs one")
    uniq = set(values)
    try:
        names = sorted(uniq, key=lambda v: (float(v), v))
    except ValueError:
        names = sorted(uniq)
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in values], dtype=np.int64), tuple(names)


# ----------------------------------------------------------------------------------------- data in memory
def _labels(y: Any, class_names: Sequence[str] | None, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
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


def item_digests(ds: Dataset) -> list[str]:
    """The SHA-256 of every example's content (image bytes or pixels; a text's words, spacing and case aside): the
    same example under another name or in another split has the same digest."""
    out = []
    for it in (ds.items[i] for i in range(len(ds))):
        if isinstance(it, np.ndarray):
            b = np.ascontiguousarray(it).tobytes()
        elif isinstance(it, Path) or (isinstance(it, str) and ds.modality == "image"):
            b = Path(it).read_bytes()
        else:
            b = " ".join(str(it).split()).lower().encode("utf-8")
        out.append(hashlib.sha256(b).hexdigest())
    return out
