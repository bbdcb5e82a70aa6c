"""A per-example quality column: one value in [0, 1] per example, 1 for the best quality the data holds and 0 for the
worst (e.g. 1 for a full-resolution photo, 0 for a heavily down-sampled or blurred one), read from a table's
``quality`` column (CSV/TSV/JSONL, labelled or not) or an NPZ's ``quality`` array (``quality_train``/``quality_test``
beside ``x_train``/``x_test``) and kept as ``meta["quality"]`` (float32) by every subset, validation split and
stratified sample of the data. PETALface (``fit --method petal``) mixes its two LoRA sets by it in place of its
image-quality proxy."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError

#: the column (table), array (NPZ) and ``meta`` key of the quality of each example
QUALITY = "quality"


def _where(rows: list[int], first_line: int) -> str:
    shown = ", ".join(str(r + first_line) for r in rows[:5])
    return f"{'row' if len(rows) == 1 else 'rows'} {shown}" + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _number(v: Any) -> float:
    try:
        return float(v) if v is not None and str(v).strip() != "" else np.nan
    except (TypeError, ValueError):
        return np.nan


def check_quality(values: Any, n: int, source: str, first_line: int = 0) -> np.ndarray:
    """``values`` as float32 ``[n]`` in [0, 1], or one :class:`DataError` naming the first bad rows (``first_line``:
    the number of the first row, 0 for arrays)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        raw: Any = values.reshape(-1)
        q = raw.astype(np.float64)
    else:
        raw = list(values)
        q = np.array([_number(v) for v in raw], dtype=np.float64)
    if len(q) != n:
        raise DataError(f"{source}: {len(q)} quality values for {n} examples; give exactly one per example")
    bad = np.flatnonzero(~(np.isfinite(q) & (q >= 0.0) & (q <= 1.0))).tolist()
    if bad:
        example = raw[bad[0]].item() if hasattr(raw[bad[0]], "item") else raw[bad[0]]
        raise DataError(f"{source}: {_where(bad, first_line)} {'has' if len(bad) == 1 else 'have'} no quality in "
                        f"[0, 1] (e.g. {example!r}); give every example a number from 0 (worst) to 1 (best), "
                        f"or drop the {QUALITY!r} column")
    return q.astype(np.float32)


def table_quality(rows: list[dict[str, Any]], source: str, first_line: int,
                  taken: tuple[str, ...] = ()) -> np.ndarray | None:
    """The ``quality`` column of a table's rows (all of them, before any split), or None without one or when the
    column is ``taken`` as the table's labels, texts, paths or identifiers (a wine-quality label is a class, not
    this)."""
    if not rows or QUALITY not in rows[0] or QUALITY in taken:
        return None
    return check_quality([r.get(QUALITY) for r in rows], len(rows), source, first_line)


def with_quality(meta: dict[str, Any], quality: np.ndarray | None, keep: Any) -> dict[str, Any]:
    """``meta`` with the quality of the kept examples (``keep``: indices, a mask or a slice of ``quality``; ``...``: all),
    if any."""
    if quality is None:
        return meta
    if keep is not ...:
        quality = np.asarray(quality)[keep if isinstance(keep, slice) else np.asarray(keep)]
    return {**meta, QUALITY: quality}


def training_fingerprint(*datasets: Any) -> str:
    """The identity of the data a training run sees: each dataset's :meth:`~transferlab.data.Dataset.fingerprint`
    (items, labels, class names) and its quality column, which the fingerprint leaves out (features do not depend
    on it; a ``petal`` fit does). None entries (no validation split) count as such."""
    import hashlib

    h = hashlib.sha256()
    for ds in datasets:
        if ds is None:
            h.update(b"none\0")
            continue
        h.update(ds.fingerprint.encode() + b"\0")
        q = (getattr(ds, "meta", None) or {}).get(QUALITY)
        h.update(b"q:" + np.asarray(q, dtype="<f4").tobytes() if q is not None else b"-")
        h.update(b"\0")
    return h.hexdigest()[:16]
