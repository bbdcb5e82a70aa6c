"""Dataset loaders: image folders, image CSVs, text CSV/JSONL, NPZ arrays and ``builtin:NAME`` sets."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import Registry
from ..errors import DataError, TransferlabError
from ._dataset import Dataset, _encode_labels, _rows_list
from ._quality import QUALITY, check_quality, table_quality, with_quality

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLITS = ("train", "test")

#: ``builtin:NAME`` datasets; each loader takes ``split`` and returns a :class:`Dataset`.
BUILTIN_DATASETS: Registry[Callable[..., Dataset]] = Registry("built-in dataset", ("transferlab.data._builtins",))


def list_builtin_datasets() -> list[str]:
    return [n.replace("_", "-") for n in BUILTIN_DATASETS.list()]


def load_dataset(
    ref: str | Path | Any,
    split: str = "train",
    *,
    text_column: str = "text",
    label_column: str = "label",
    path_column: str = "path",
    test_fraction: float = 0.2,
    strict: bool = False,
) -> Dataset:
    """Load a dataset split from a reference.

    ``ref`` is ``builtin:NAME``, a dataset manifest (a folder with ``transferlab-dataset.json``, or that file: a class
    subset of another dataset, as ``transferlab prune`` writes), an image folder (one sub-folder per class, optionally
    under ``train/`` and ``test/``),
    a CSV of ``path,label`` (image) or ``text,label`` (text), a JSONL of text records, or an NPZ with ``x`` and ``y``
    (or ``x_train``/``y_train``/``x_test``/``y_test``).

    Splits are explicit and stable: where the source has none, an example goes to the test split when the hash of its
    identity (relative path, text, or index) falls in the lowest ``test_fraction`` of its class, so adding files does not
    reshuffle the others.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    from ._memory import as_dataset

    in_memory = as_dataset(ref, split)  # (X, y), (texts, labels), a DataFrame, a torch or HF dataset: used whole
    if in_memory is not None:
        return in_memory
    ref_s = str(ref)
    if ref_s.startswith("builtin:"):
        name = ref_s.split(":", 1)[1].replace("-", "_")
        if name not in BUILTIN_DATASETS:
            raise DataError(
                f"unknown built-in dataset {ref_s!r}; known: "
                + ", ".join(f"builtin:{n}" for n in list_builtin_datasets())
            )
        return BUILTIN_DATASETS.get(name)(split=split)
    path = Path(ref_s).expanduser()
    if not path.exists():
        raise DataError(
            f"dataset {ref_s!r} not found: give an existing folder, .csv, .jsonl or .npz file, or builtin:NAME "
            f"(known: {', '.join('builtin:' + n for n in list_builtin_datasets())})"
        )
    from ._manifest import is_manifest, load_manifest

    manifest = is_manifest(path)
    if manifest is not None:  # a class subset of another dataset (transferlab prune)
        return load_manifest(manifest, split, load_dataset, text_column=text_column, label_column=label_column,
                             path_column=path_column, test_fraction=test_fraction, strict=strict)
    if path.is_dir():
        return _load_image_folder(path, split, test_fraction=test_fraction, strict=strict)
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    suffix = suffix.lower()
    if suffix in (".csv", ".csv.gz", ".tsv"):
        return _load_csv(path, split, text_column=text_column, label_column=label_column, path_column=path_column,
                         test_fraction=test_fraction, strict=strict)
    if suffix in (".jsonl", ".jsonl.gz", ".ndjson"):
        return _load_jsonl(path, split, text_column=text_column, label_column=label_column,
                           test_fraction=test_fraction)
    if suffix == ".npz":
        return _load_npz(path, split, test_fraction=test_fraction)
    raise DataError(f"don't know how to read {path.name!r}: use a folder, .csv, .jsonl or .npz")


# ----------------------------------------------------------------------------------------------------------- helpers
def _hash_split(keys: Sequence[str], labels: np.ndarray, split: str, test_fraction: float) -> np.ndarray:
    """Indices of ``split`` under the stable, class-stratified hash split."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    h = np.array([int.from_bytes(hashlib.sha1(k.encode("utf-8")).digest()[:8], "big") for k in keys], dtype=np.uint64)
    is_test = np.zeros(len(keys), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue  # a singleton class stays in train; the rank checks report it
        n_test = max(1, int(round(test_fraction * len(idx))))
        order = idx[np.argsort(h[idx], kind="stable")]
        is_test[order[:n_test]] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def _check_images(paths: list[Path], source: str, strict: bool,
                  missing: Sequence[Path] = ()) -> tuple[list[Path], list[str]]:
    """The readable images of ``paths``; the others (corrupt, not images, decompression bombs) are skipped with one
    warning (on stderr) that counts them with ``missing`` files and names the first few, or refused with ``strict``."""
    from PIL import Image, UnidentifiedImageError

    good, bad = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
            good.append(p)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            if strict:
                raise DataError(
                    f"{source}: image {str(p)!r} is corrupt or unreadable ({exc.__class__.__name__}: {exc}); "
                    "fix or remove it, or drop --strict to skip unreadable images with a warning"
                ) from None
            bad.append(str(p))
    skipped = [str(p) for p in missing] + bad
    if skipped:
        what = " and ".join(x for x in (f"{len(missing)} missing" if missing else "",
                                        f"{len(bad)} unreadable" if bad else "") if x)
        log.warning("%s: skipped %d image(s) (%s), e.g. %s (use --strict to fail instead)", source, len(skipped),
                    what, ", ".join(skipped[:3]))
    return good, skipped


# ------------------------------------------------------------------------------------------------------ image folder
def _load_image_folder(root: Path, split: str, *, test_fraction: float, strict: bool) -> Dataset:
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / split if has_splits else root
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"image folder {str(base)!r} has no class sub-folders: put each class's images in its own sub-folder "
            "(root/CLASS/image.png), or give a CSV of path,label"
        )
    paths: list[Path] = []
    raw_labels: list[str] = []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        raw_labels += [d.name] * len(files)
    if not paths:
        raise DataError(
            f"image folder {str(base)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders"
        )
    class_names = tuple(d.name for d in class_dirs)
    index = {n: i for i, n in enumerate(class_names)}
    labels = np.array([index[n] for n in raw_labels], dtype=np.int64)
    if not has_splits:
        keep = _hash_split([p.relative_to(root).as_posix() for p in paths], labels, split, test_fraction)
        paths, labels = [paths[i] for i in keep], labels[keep]
    good, bad = _check_images(paths, str(root), strict)
    if bad:
        keep_set = set(map(str, good))
        mask = np.array([str(p) in keep_set for p in paths])
        paths, labels = good, labels[mask]
    if not paths:
        raise DataError(f"image folder {str(root)!r}: no readable images in the {split} split")
    return Dataset(root.name, "image", paths, labels, class_names, split, {"source": str(root), "skipped": len(bad)})


# --------------------------------------------------------------------------------------------------------- CSV/JSONL
def _read_table(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            if ".jsonl" in path.suffixes or path.suffix == ".ndjson":
                rows = []
                for i, line in enumerate(fh):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise DataError(f"{path.name}: line {i + 1} is not valid JSON ({exc.msg})") from None
                        if not isinstance(row, dict):
                            raise DataError(f"{path.name}: line {i + 1} is a JSON {type(row).__name__}, not an "
                                            'object: each line must be a record like {"text": ..., "label": ...}')
                        rows.append(row)
                return rows
            delim = "\t" if ".tsv" in path.suffixes else ","
            return list(csv.DictReader(fh, delimiter=delim))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name} is not UTF-8 text ({exc.reason}); re-save it as UTF-8") from None


def _need_columns(rows: list[dict[str, Any]], path: Path, needed: dict[str, str]) -> None:
    if not rows:
        raise DataError(f"{path.name} is empty: it holds no rows")
    cols = list(rows[0].keys())
    for flag, col in needed.items():
        if col not in rows[0]:
            raise DataError(
                f"{path.name} has no column {col!r} (columns: {', '.join(map(str, cols))}); "
                f"name the right one with {flag}"
            )


def _split_rows(rows: list[dict[str, Any]], keys: list[str], labels: np.ndarray, split: str,
                test_fraction: float) -> np.ndarray:
    if rows and "split" in rows[0]:
        return np.array([i for i, r in enumerate(rows) if str(r["split"]).strip() == split], dtype=np.int64)
    return _hash_split(keys, labels, split, test_fraction)


def _load_csv(path: Path, split: str, *, text_column: str, label_column: str, path_column: str,
              test_fraction: float, strict: bool) -> Dataset:
    rows = _read_table(path)
    if rows and path_column in rows[0] and text_column not in rows[0]:
        _need_columns(rows, path, {"--label-column": label_column})
        labels, names = _encode_labels([r.get(label_column) for r in rows], path.name, first_line=2)
        no_path = [i for i, r in enumerate(rows) if not (r.get(path_column) or "").strip()]
        if no_path:
            raise DataError(f"{path.name}: {_rows_list(no_path, 2)} {'has' if len(no_path) == 1 else 'have'} no "
                            f"image path in column {path_column!r}")
        keys = [str(r[path_column]) for r in rows]
        keep = _split_rows(rows, keys, labels, split, test_fraction)
        paths = [(path.parent / keys[i]).resolve() for i in keep]
        missing = [p for p in paths if not p.is_file()]
        if missing and strict:
            raise DataError(f"{path.name}: image {str(missing[0])!r} does not exist ({len(missing)} missing)")
        good, bad = _check_images([p for p in paths if p.is_file()], path.name, strict, missing)
        keep_set = set(map(str, good))
        mask = np.array([str(p) in keep_set for p in paths], dtype=bool)
        if not mask.any():
            raise DataError(f"{path.name}: no readable images in the {split} split")
        return Dataset(path.stem, "image", good, labels[keep][mask], names, split,
                       with_quality({"source": str(path), "skipped": len(bad), "rows": keep[mask].tolist()},
                                    table_quality(rows, path.name, 2, (label_column, path_column)), keep[mask]))
    return _text_dataset(rows, path, split, text_column, label_column, test_fraction)


def _load_jsonl(path: Path, split: str, *, text_column: str, label_column: str, test_fraction: float) -> Dataset:
    return _text_dataset(_read_table(path), path, split, text_column, label_column, test_fraction)


def _text_dataset(rows: list[dict[str, Any]], path: Path, split: str, text_column: str, label_column: str,
                  test_fraction: float) -> Dataset:
    if rows and text_column not in rows[0] and all(c in rows[0] for c in ("text_a", "text_b")):
        return _pair_table(rows, path, split, label_column, test_fraction)
    _need_columns(rows, path, {"--text-column": text_column, "--label-column": label_column})
    first = 1 if ".jsonl" in path.suffixes or path.suffix == ".ndjson" else 2  # CSV: line 1 is the header
    no_text = [i for i, r in enumerate(rows) if r.get(text_column) is None]
    if no_text:
        raise DataError(f"{path.name}: {_rows_list(no_text, first)} {'has' if len(no_text) == 1 else 'have'} no "
                        f"{text_column!r} field")
    labels, names = _encode_labels([r.get(label_column) for r in rows], path.name, first_line=first)
    texts = [str(r[text_column]) for r in rows]
    if not any(t.strip() for t in texts):
        raise DataError(f"{path.name}: every text in column {text_column!r} is empty; name the text column with "
                        "--text-column")
    keep = _split_rows(rows, texts, labels, split, test_fraction)
    if len(keep) == 0:
        raise DataError(f"{path.name}: the {split} split is empty")
    return Dataset(path.name.split(".")[0], "text", [texts[i] for i in keep], labels[keep], names, split,
                   with_quality({"source": str(path), "rows": keep.tolist()},
                                table_quality(rows, path.name, first, (text_column, label_column)), keep))


def _pair_table(rows: list[dict[str, Any]], path: Path, split: str, label_column: str,
                test_fraction: float) -> Dataset:
    """A table of sentence pairs (``text_a``, ``text_b``, a label): :mod:`transferlab.data._pairs`."""
    from ._pairs import PAIR_SEP, pair_dataset

    _need_columns(rows, path, {"--label-column": label_column})
    first = 1 if ".jsonl" in path.suffixes or path.suffix == ".ndjson" else 2
    gaps = [i for i, r in enumerate(rows) if r.get("text_a") is None or r.get("text_b") is None]
    if gaps:
        raise DataError(f"{path.name}: {_rows_list(gaps, first)} {'lacks' if len(gaps) == 1 else 'lack'} text_a or "
                        "text_b")
    labels, names = _encode_labels([r.get(label_column) for r in rows], path.name, first_line=first)
    a, b = [str(r["text_a"]) for r in rows], [str(r["text_b"]) for r in rows]
    keep = _split_rows(rows, [x + PAIR_SEP + y for x, y in zip(a, b, strict=True)], labels, split, test_fraction)
    if len(keep) == 0:
        raise DataError(f"{path.name}: the {split} split is empty")
    return pair_dataset(path.name.split(".")[0], [a[i] for i in keep], [b[i] for i in keep], labels[keep], names,
                        split, {"source": str(path), "rows": keep.tolist()})


# ---------------------------------------------------------------------------------------------------------------- NPZ
def _load_npz(path: Path, split: str, *, test_fraction: float) -> Dataset:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataError(f"{path.name} is not a valid NPZ file (an NPZ is a zip archive of .npy arrays, as written by "
                        "numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path.name} holds object arrays, which load through pickle and can run code: save "
                            "plain numeric arrays") from None
        raise DataError(f"{path.name} is not a valid NPZ file ({exc})") from None
    except Exception as exc:  # noqa: BLE001  (zipfile.BadZipFile, OSError, EOFError: truncated or damaged)
        raise DataError(f"{path.name} is damaged and cannot be read as NPZ ({type(exc).__name__}: {exc})") from None
    if f"x_{split}" in arrays:
        x, y, q = arrays[f"x_{split}"], arrays.get(f"y_{split}"), arrays.get(f"{QUALITY}_{split}")
        keys = None
    elif "x" in arrays:
        x, y, q = arrays["x"], arrays.get("y"), arrays.get(QUALITY)
        keys = [str(i) for i in range(len(x))]
    else:
        raise DataError(f"{path.name} needs arrays 'x' and 'y' (or x_train/y_train/x_test/y_test); found "
                        f"{', '.join(arrays) or 'none'}")
    if y is None:
        raise DataError(f"{path.name} has features but no labels array 'y'")
    if len(x) != len(y):
        raise DataError(f"{path.name}: 'x' has {len(x)} rows but 'y' has {len(y)} labels; they must match")
    if len(x) == 0:
        raise DataError(f"{path.name} is empty: it holds no rows")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{path.name}: 'x' holds {x.dtype} values; it must be numeric (features or uint8 images)")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1)).tolist()
        raise DataError(f"{path.name}: 'x' holds NaN or infinite values in {len(rows)} row(s) "
                        f"({_rows_list(rows, 0)}, counting from 0); remove or impute them")
    if "class_names" in arrays:
        names = tuple(str(n) for n in arrays["class_names"])
        labels = y.astype(np.int64)
    else:
        labels, names = _encode_labels(list(y), path.name)
    modality = "image" if x.dtype == np.uint8 and x.ndim in (3, 4) else "array"
    q = None if q is None else check_quality(q, len(x), f"{path.name} ({QUALITY} array)")
    if keys is not None:
        keep = _hash_split(keys, labels, split, test_fraction)
        x, labels, q = x[keep], labels[keep], None if q is None else q[keep]
    return Dataset(path.stem, modality, x, labels, names, split, with_quality({"source": str(path)}, q, ...))


def train_and_test(data: Any, test: Any = None) -> tuple[Dataset, Dataset | None]:
    """``data``'s train split and a test split: ``test`` when given, else ``data``'s own test split when ``data`` is a
    reference that has one (data in memory has none), else None."""
    train = load_dataset(data, "train")
    if test is not None:
        return train, load_dataset(test, "test")
    if isinstance(data, (str, Path)):
        try:
            return train, load_dataset(data, "test")
        except TransferlabError:
            return train, None
    return train, None
