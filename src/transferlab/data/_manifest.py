"""Dataset manifests: a JSON file that names a source dataset and the classes kept of it (what ``transferlab prune``
writes), read by :func:`~transferlab.data.load_dataset` as a dataset of its own.

``{"format": 1, "kind": "class_subset", "source": REF, "classes": [NAME, ...]}``; a local ``source`` is recorded
relative to the manifest's folder. Classes keep the source's order; labels are renumbered 0..K-1."""

from __future__ import annotations

import contextvars
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

MANIFEST = "transferlab-dataset.json"


def is_manifest(path: Path) -> Path | None:
    """The manifest file ``path`` is, or holds (a folder with ``transferlab-dataset.json``); else None."""
    if path.is_dir():
        f = path / MANIFEST
        return f if f.is_file() else None
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return path if isinstance(raw, dict) and raw.get("kind") == "class_subset" else None
    return None


def manifest_dict(source: str | Path, classes: list[str], where: Path, **extra: Any) -> dict[str, Any]:
    """The manifest content for ``classes`` of ``source``, to be written in the folder ``where``."""
    s = str(source)
    if ":" not in s or Path(s).expanduser().exists():  # a local path: relative to the manifest
        s = os.path.relpath(os.path.abspath(os.path.expanduser(s)), os.path.abspath(where))
    return {"format": 1, "kind": "class_subset", "source": s, "classes": [str(c) for c in classes], **extra}


#: the manifests being loaded, outermost first: a source that leads back to one of them is a loop, not a recursion
_loading: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("transferlab_manifests", default=())


def load_manifest(path: Path, split: str, load_dataset: Any, **kwargs: Any) -> Any:
    """The manifest's classes of its source, ``split``; ``load_dataset`` loads the source (passed in: the loader
    module imports this one)."""
    from ._dataset import Dataset

    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable dataset manifest: {exc}") from None
    if not isinstance(raw, dict) or raw.get("kind") != "class_subset" or not isinstance(raw.get("classes"), list):
        raise DataError(f"{path}: a dataset manifest needs kind 'class_subset', a source and a list of classes")
    src = str(raw.get("source") or "")
    if ":" not in src or not src.split(":", 1)[0].isalpha() or len(src.split(":", 1)[0]) < 2:
        src = str((path.parent / src).resolve())
    chain = _loading.get()
    here = str(path.resolve())
    if here in chain:  # a manifest whose source is itself, or a loop of manifests
        loop = " -> ".join([*chain[chain.index(here):], here])
        raise DataError(f"{path}: its source leads back to itself ({loop}); a manifest's source must be a dataset")
    token = _loading.set((*chain, here))
    try:
        ds = load_dataset(src, split, **kwargs)
    finally:
        _loading.reset(token)
    names = [str(c) for c in ds.class_names]
    missing = [c for c in raw["classes"] if str(c) not in names]
    if missing:
        raise DataError(f"{path}: the source {ds.name} has no class {missing[0]!r} ({len(missing)} missing)")
    keep = [names.index(str(c)) for c in raw["classes"]]
    keep_sorted = sorted(keep)
    idx = np.flatnonzero(np.isin(ds.labels, keep_sorted))
    remap = {c: i for i, c in enumerate(keep_sorted)}
    sub = ds.subset(idx)
    return Dataset(f"{ds.name}-{path.parent.name if path.name == MANIFEST else path.stem}", ds.modality, sub.items,
                   np.array([remap[int(v)] for v in sub.labels], dtype=np.int64),
                   tuple(names[c] for c in keep_sorted), split, {**sub.meta, "manifest": str(path)})
