"""Inputs without labels, for prediction: a flat folder of images, a CSV/JSONL with only its input column, an NPZ
with only ``x``, arrays, lists of texts or image paths, a DataFrame or a Hugging Face dataset without a label column.

A :class:`~transferlab.data.Dataset` is always labelled (every metric, fit and evaluation relies on it); data without
labels is an :class:`Inputs` instead: items, one identifier per item (a file path, a row number, or the table's own id
column), no labels and no class names. :func:`load_inputs` returns a ``Dataset`` where the data has labels (loaded
exactly as :func:`~transferlab.data.load_dataset` loads it) and ``Inputs`` where it has none."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._dataset import Dataset, Modality, _rows_list
from ._quality import QUALITY, table_quality, with_quality


@dataclass(frozen=True, eq=False)
class Inputs:
    """Data to predict, without labels. ``items`` as in :class:`~transferlab.data.Dataset` (image paths or a uint8
    array ``[N, H, W(, C)]``, texts, a numeric array); ``ids``: one identifier per item; ``meta["order"]``: how the
    items were found and ordered (said by ``transferlab predict``)."""

    name: str
    modality: Modality
    items: Any
    ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.items) != len(self.ids):
            raise DataError(f"{self.name}: {len(self.items)} items but {len(self.ids)} identifiers")
        if len(self.items) == 0:
            raise DataError(f"{self.name} is empty: it holds nothing to predict")

    def __len__(self) -> int:
        return len(self.items)

    def head(self, n: int) -> Inputs:
        """The first ``n`` inputs (``--limit`` of data without labels: there are no classes to stratify by)."""
        if n <= 0:
            raise DataError(f"--limit must be positive, got {n}")
        items = self.items[:n] if isinstance(self.items, np.ndarray) else list(self.items)[:n]
        q = self.meta.get(QUALITY)
        return replace(self, items=items, ids=self.ids[:n], meta=with_quality(self.meta, q, slice(0, n)))


def load_inputs(ref: Any, split: str = "test", *, text_column: str = "text", label_column: str = "label",
                path_column: str = "path", id_column: str | None = None, modality: str | None = None,
                test_fraction: float = 0.2, strict: bool = False) -> Dataset | Inputs:
    """``ref`` for prediction: a labelled :class:`Dataset` (its ``split``, as :func:`load_dataset` loads it) where
    it has labels, else :class:`Inputs` (all of it: without labels there is no split).

    Unlabelled are: a folder with image files directly in it (read recursively, in path order; a folder of
    sub-folders only is an image-class folder), a CSV/JSONL without ``label_column`` (``path_column``: image paths
    relative to the file, or ``text_column``: texts), an NPZ with ``x`` and no ``y``, a numpy array (uint8 images
    ``[N, H, W(, C)]``, or features; for an image model, floats in [0, 1] are images too), a list of texts or of
    image paths, PIL images, a pandas DataFrame or a ``datasets.Dataset`` without ``label_column``. ``modality``
    (the model's: ``"image"`` or ``"text"``) tells a list of strings apart; without it, strings that all end in an
    image suffix are paths. ``id_column``: the identifiers of a table's rows (default: the image path, else the row
    number counting from 0)."""
    from ._loaders import load_dataset

    cols = {"text_column": text_column, "label_column": label_column, "path_column": path_column}
    if isinstance(ref, (Dataset, Inputs)):
        return ref
    if isinstance(ref, (str, Path)):
        found = _reference(Path(str(ref)).expanduser(), str(ref), id_column, cols, strict)
        if found is not None:
            return found
        ds = load_dataset(ref, split, test_fraction=test_fraction, strict=strict, **cols)
        return _with_ids(ds, Path(str(ref)).expanduser(), id_column) if id_column else ds
    mod = type(ref).__module__
    if isinstance(ref, np.ndarray) or (mod.startswith("torch") and hasattr(ref, "numpy")):
        return _array(np.asarray(ref), modality)
    if isinstance(ref, (list, tuple)) and ref and all(isinstance(v, (str, Path)) for v in ref):
        return _strings(list(ref), modality, strict=True)
    if isinstance(ref, list) and ref and (hasattr(ref[0], "convert") or isinstance(ref[0], np.ndarray)):
        return _array(_stack(ref), modality)
    if mod.startswith("pandas") and label_column not in ref.columns:
        return _table(ref.to_dict("records"), "dataframe", None, cols, id_column, strict,
                      index=[str(i) for i in ref.index])
    if mod.startswith("datasets") and label_column not in ref.column_names:
        return _hf(ref, cols, id_column, modality)
    if isinstance(ref, list) and not ref:
        raise DataError("nothing to predict: the list is empty")
    return load_dataset(ref, split, test_fraction=test_fraction, strict=strict, **cols)


# ------------------------------------------------------------------------------------------------------ references
def _reference(path: Path, ref: str, id_column: str | None, cols: dict[str, str], strict: bool) -> Inputs | None:
    """``path`` as unlabelled inputs, or None when it is labelled (or not a local file: load_dataset says why)."""
    from ._loaders import IMAGE_SUFFIXES, _read_table
    from ._manifest import is_manifest

    if ref.startswith("builtin:") or not path.exists() or is_manifest(path) is not None:
        return None
    if path.is_dir():
        top = [p for p in path.iterdir() if not p.name.startswith(".")]
        images_here = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in top)
        return _folder(path, strict) if images_here or not any(p.is_dir() for p in top) else None
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if suffix in (".csv", ".csv.gz", ".tsv", ".jsonl", ".jsonl.gz", ".ndjson"):
        rows = _read_table(path)
        if rows and cols["label_column"] in rows[0]:
            return None
        first = 2 if suffix in (".csv", ".csv.gz", ".tsv") else 1  # a CSV's line 1 is its header
        return _table(rows, path.name, path.parent, cols, id_column, strict, first_line=first)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "x" in files and "y" not in files:
                return _array(z["x"], None, name=path.stem)
    return None


def _folder(root: Path, strict: bool) -> Inputs:
    """Every image under ``root`` (sub-folders too), in the order of their paths relative to ``root``."""
    from ._loaders import IMAGE_SUFFIXES, _check_images

    paths = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                   key=lambda p: p.relative_to(root).as_posix())
    if not paths:
        raise DataError(f"folder {str(root)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    good, bad = _check_images(paths, str(root), strict)
    if not good:
        raise DataError(f"folder {str(root)!r}: none of its {len(paths)} images is readable")
    order = (f"{len(good)} images under {root} without class sub-folders, read recursively in path order"
             + (f" ({len(bad)} unreadable skipped)" if bad else ""))
    return Inputs(root.name, "image", good, [str(p) for p in good], {"source": str(root), "order": order,
                                                                      "skipped": len(bad)})


def _table(rows: list[dict[str, Any]], name: str, base: Path | None, cols: dict[str, str], id_column: str | None,
           strict: bool, *, first_line: int = 0, index: list[str] | None = None) -> Inputs:
    """Rows without labels: image paths (relative to ``base``) in ``path_column``, or texts in ``text_column``."""
    if not rows:
        raise DataError(f"{name} is empty: it holds no rows")
    text_c, path_c = cols["text_column"], cols["path_column"]
    if id_column is not None and id_column not in rows[0]:
        raise DataError(f"{name} has no column {id_column!r} (columns: {', '.join(map(str, rows[0]))}); name the "
                        "identifier column with --id-column")
    ids = [str(r[id_column]) for r in rows] if id_column else (index or [str(i) for i in range(len(rows))])
    quality = table_quality(rows, name, first_line, (text_c, path_c, id_column or ""))  # petal (data._quality)
    if path_c in rows[0] and text_c not in rows[0]:
        raw = [str(r.get(path_c) or "").strip() for r in rows]
        empty = [i for i, p in enumerate(raw) if not p or p.lower() == "nan"]
        if empty:
            raise DataError(f"{name}: {_rows_list(empty, first_line)} {'has' if len(empty) == 1 else 'have'} no "
                            f"image path in column {path_c!r}")
        return _image_rows(raw, ids if id_column or index else raw, name, base, strict, quality)
    if text_c not in rows[0] and all(c in rows[0] for c in ("text_a", "text_b")):
        return _pair_rows(rows, name, ids, first_line)
    if text_c not in rows[0]:
        raise DataError(f"{name} has no column {text_c!r} (texts) or {path_c!r} (image paths) (columns: "
                        f"{', '.join(map(str, rows[0]))}); name the text column with --text-column")
    missing = [i for i, r in enumerate(rows) if r.get(text_c) is None]
    if missing:
        raise DataError(f"{name}: {_rows_list(missing, first_line)} {'has' if len(missing) == 1 else 'have'} no "
                        f"{text_c!r} field")
    texts = [str(r[text_c]) for r in rows]
    return Inputs(name.split(".")[0], "text", texts, ids, with_quality(
        {"source": name, "order": f"{len(texts)} texts of {name} without labels, in row order"}, quality, ...))


def _pair_rows(rows: list[dict[str, Any]], name: str, ids: list[str], first_line: int) -> Inputs:
    """Sentence pairs without labels: ``text_a`` and ``text_b`` joined as a pair dataset joins them."""
    from ._pairs import PAIR_SEP

    gaps = [i for i, r in enumerate(rows) if r.get("text_a") is None or r.get("text_b") is None]
    if gaps:
        raise DataError(f"{name}: {_rows_list(gaps, first_line)} {'lacks' if len(gaps) == 1 else 'lack'} text_a or "
                        "text_b")
    a, b = [str(r["text_a"]) for r in rows], [str(r["text_b"]) for r in rows]
    return Inputs(name.split(".")[0], "text", [x + PAIR_SEP + y for x, y in zip(a, b, strict=True)], ids,
                  {"source": name, "order": f"{len(a)} text pairs of {name} without labels, in row order",
                   "pair": True, "text_a": a, "text_b": b})


def _image_rows(raw: list[str], ids: list[str], name: str, base: Path | None, strict: bool,
                quality: np.ndarray | None = None) -> Inputs:
    from ._loaders import _check_images

    paths = [((base / p) if base is not None else Path(p)).resolve() for p in raw]
    missing = [p for p in paths if not p.is_file()]
    if missing and strict:
        raise DataError(f"{name}: image {str(missing[0])!r} does not exist ({len(missing)} missing)")
    good, bad = _check_images([p for p in paths if p.is_file()], name, strict, missing)
    keep = set(map(str, good))
    kept = [i for i, p in enumerate(paths) if str(p) in keep]
    if not kept:
        raise DataError(f"{name}: none of its {len(paths)} images is readable")
    order = (f"{len(kept)} images of {name} without labels, in row order"
             + (f" ({len(bad)} missing or unreadable skipped)" if bad else ""))
    return Inputs(Path(name).name.split(".")[0], "image", [paths[i] for i in kept], [ids[i] for i in kept],
                  with_quality({"source": name, "order": order, "skipped": len(bad)}, quality, kept))


def _with_ids(ds: Dataset, path: Path, id_column: str) -> Dataset:
    """A labelled table's split with its rows' ``id_column`` as their identifiers (``meta["ids"]``)."""
    from ._loaders import _read_table

    rows = ds.meta.get("rows")
    if rows is None:
        raise DataError(f"--id-column names a column of a CSV/JSONL table; {ds.name} is not one")
    table = _read_table(path)
    if id_column not in table[0]:
        raise DataError(f"{path.name} has no column {id_column!r} (columns: {', '.join(map(str, table[0]))}); "
                        "name the identifier column with --id-column")
    return replace(ds, meta={**ds.meta, "ids": [str(table[r][id_column]) for r in rows]})


# ------------------------------------------------------------------------------------------------------- in memory
def _stack(images: Sequence[Any]) -> np.ndarray:
    arrays = [np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"the images have {len(shapes)} different sizes (e.g. {sorted(shapes)[:2]}); resize them to "
                        "one size, or pass their file paths")
    return np.stack(arrays)


def _array(x: np.ndarray, modality: str | None, name: str = "array") -> Inputs:
    """Images (uint8 ``[N, H, W(, C)]``; for an image model also floats in [0, 1] or integers in 0..255) or
    feature vectors, one identifier per row (its number)."""
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{name}: X holds {x.dtype} values; give numeric arrays (texts and image paths as a list)")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"nothing to predict: the {name} is empty")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1)).tolist()
        raise DataError(f"{name}: X holds NaN or infinite values in {_rows_list(rows, 0)} (counting from 0)")
    if modality == "image" and x.dtype != np.uint8 and x.ndim in (3, 4):
        x = _as_uint8(x, name)
    kind = "image" if x.dtype == np.uint8 and x.ndim in (3, 4) else "array"
    if kind == "image" and x.ndim == 4 and x.shape[-1] not in (1, 3, 4):
        raise DataError(f"{name}: images are [N, H, W] or [N, H, W, C] with 1, 3 or 4 channels last; got shape "
                        f"{tuple(x.shape)}")
    what = "images" if kind == "image" else "rows"
    return Inputs(name, kind, x, [str(i) for i in range(len(x))],
                  {"source": "memory", "order": f"{len(x)} {what} of an array, in row order"})


def _as_uint8(x: np.ndarray, name: str) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.floating) and lo >= 0 and hi <= 1:
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    if lo >= 0 and hi <= 255 and np.array_equal(x, np.rint(x)):
        return x.astype(np.uint8)
    raise DataError(f"{name}: images are uint8 (0-255) or floats in [0, 1]; these values range over [{lo}, {hi}]")


def _strings(values: list[Any], modality: str | None, strict: bool) -> Inputs:
    """A list of texts, or of image paths (``modality`` ``"image"``, or every value a Path or an image file name)."""
    from ._loaders import IMAGE_SUFFIXES

    paths = modality == "image" or (modality is None and all(
        isinstance(v, Path) or Path(str(v)).suffix.lower() in IMAGE_SUFFIXES for v in values))
    if paths:
        return _image_rows([str(v) for v in values], [str(v) for v in values], "paths", None, strict)
    texts = [str(v) for v in values]
    return Inputs("texts", "text", texts, [str(i) for i in range(len(texts))],
                  {"source": "memory", "order": f"{len(texts)} texts, in list order"})


def _hf(ds: Any, cols: dict[str, str], id_column: str | None, modality: str | None) -> Inputs:
    """A Hugging Face ``datasets.Dataset`` without labels: a text (``text``/``sentence``) or image
    (``image``/``img``) column."""
    names = list(ds.column_names)
    text_c = next((c for c in (cols["text_column"], "text", "sentence") if c in names), None)
    image_c = next((c for c in ("image", "img") if c in names), None)
    if id_column is not None and id_column not in names:
        raise DataError(f"hf: no column {id_column!r} (columns: {', '.join(names)})")
    ids = [str(v) for v in ds[id_column]] if id_column else [str(i) for i in range(len(ds))]
    if image_c is not None and (text_c is None or modality == "image"):
        inputs = _array(_stack(ds[image_c]), "image", name="hf")
    elif text_c is not None:
        inputs = _strings(list(ds[text_c]), "text", strict=True)
    else:
        raise DataError(f"hf: no text ({cols['text_column']!r}, 'sentence') or image ('image', 'img') column; "
                        f"columns: {', '.join(names)}")
    return replace(inputs, name="hf", ids=ids)
