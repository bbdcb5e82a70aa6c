"""Content-addressed, chunked, atomic on-disk feature cache.

Key = SHA-256 of (backbone identity: model reference + weights hash, preprocessing, dataset fingerprint, format
version; and, for ``rank --layers mean|best``, the layer mode: ``last`` adds nothing, so the keys of the model's
output are those of before). Features are written in chunks, each atomically (temporary file + rename), so a killed
run resumes at the first missing chunk and a reader never sees a torn file. A ``done.json`` marks a complete entry.
A chunk of several layers carries their widths too (under its checksum).

Every chunk carries the SHA-256 of its arrays, and the scores file the SHA-256 of its scores bound to the chunks'
checksums (a score edited and re-hashed alone does not match); both are verified on read. A chunk or scores file that is damaged (truncated, flipped bytes) or altered is a warning and a recompute,
never an error and never used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open, write_json_atomic
from ..errors import CacheError, OutputError

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: checksums in chunks and scores


def default_cache_dir() -> Path:
    """``$TRANSFERLAB_CACHE``, else the platform's user cache directory."""
    env = os.environ.get("TRANSFERLAB_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("transferlab"))


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _cache_error(exc: OSError | OutputError, where: Path) -> CacheError:
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied"}.get(getattr(exc, "errno", 0) or 0, getattr(exc, "strerror", None) or str(exc))
    return CacheError(
        f"cannot write the feature cache at {str(where)!r} ({why}); free space, or point --cache-dir (or "
        "$TRANSFERLAB_CACHE) at a writable directory, or pass --no-cache"
    )


def _digest(features: np.ndarray, probs: np.ndarray | None, layer_dims: np.ndarray | None = None) -> str:
    h = hashlib.sha256()
    for a in (features, probs, layer_dims):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _scores_digest(scores: dict[str, Any], features: str) -> str:
    """The scores bound to the features they were computed on (``features``: the digest of the entry's chunks): a
    score edited and re-hashed on its own no longer matches."""
    from .._io import json_text

    body = {"scores": scores, "features": features, "scheme": 2}
    return hashlib.sha256(json_text(body, indent=None, sort_keys=True).encode()).hexdigest()


class FeatureCache:
    """One cache entry per (model, preprocessing, dataset): ``root/features/<key[:2]>/<key>/``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def entry(self, key: str) -> CacheEntry:
        return CacheEntry(self.root / "features" / key[:2] / key, key)

    def check_writable(self) -> None:
        """Fail early, before any model runs, if the cache cannot be written."""
        probe_dir = self.root / "features"
        try:
            probe_dir.mkdir(parents=True, exist_ok=True)
            with atomic_open(probe_dir / ".write-test", "wb") as fh:
                fh.write(b"ok")
            os.unlink(probe_dir / ".write-test")
        except (OSError, OutputError) as exc:
            raise _cache_error(exc, self.root) from None


class CacheEntry:
    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    def _chunk(self, i: int) -> Path:
        return self.path / f"chunk-{i:06d}.npz"

    @property
    def done(self) -> bool:
        return (self.path / "done.json").is_file()

    def read_chunk(self, i: int) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...] | None] | None:
        """(features, source probabilities or None, the layers' widths or None) of chunk ``i``; None when it is
        missing, damaged or altered."""
        p = self._chunk(i)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                f = z["features"]
                probs = z["source_probs"] if "source_probs" in z.files else None
                dims = z["layer_dims"] if "layer_dims" in z.files else None
                stored = bytes(z["sha256"]).hex() if "sha256" in z.files else None
        except Exception as exc:  # noqa: BLE001  (zipfile.BadZipFile, OSError, ValueError, ...: damaged or foreign)
            log.warning("cache chunk %s is damaged (%s: %s); recomputing it", p, type(exc).__name__, exc)
            return None
        if stored != _digest(f, probs, dims):
            log.warning("cache chunk %s does not match its checksum (altered or damaged); recomputing it", p)
            return None
        return f, probs, (tuple(int(d) for d in dims) if dims is not None else None)

    def write_chunk(self, i: int, features: np.ndarray, probs: np.ndarray | None,
                    layer_dims: tuple[int, ...] | None = None) -> None:
        """Chunk ``i``, atomically, with its checksum; ``layer_dims``: the widths of the layers it holds (layer
        modes other than ``last``)."""
        arrays = {"features": features} if probs is None else {"features": features, "source_probs": probs}
        dims = np.asarray(layer_dims, dtype=np.int64) if layer_dims is not None else None
        if dims is not None:
            arrays["layer_dims"] = dims
        arrays["sha256"] = np.frombuffer(bytes.fromhex(_digest(features, probs, dims)), dtype=np.uint8)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_open(self._chunk(i), "wb") as fh:
                np.savez(fh, **arrays)
        except (OSError, OutputError) as exc:
            raise _cache_error(exc, self.path) from None

    def features_digest(self) -> str:
        """SHA-256 over the checksums every chunk of this entry carries (what the scores were computed on)."""
        h = hashlib.sha256()
        for p in sorted(self.path.glob("chunk-*.npz")):
            try:
                with np.load(p, allow_pickle=False) as z:
                    h.update(bytes(z["sha256"]) if "sha256" in z.files else b"")
            except Exception:  # noqa: BLE001  (a damaged chunk: recomputed by the reader; its scores with it)
                h.update(b"damaged")
        return h.hexdigest()

    def mark_done(self, meta: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.path / "done.json", meta)
        except (OSError, OutputError) as exc:
            raise _cache_error(exc, self.path) from None

    def read_done(self) -> dict[str, Any]:
        """What ``done.json`` records of the run that completed this entry (model, dataset, shape, and ``cold``: the
        timings of the extraction that computed the features); {} without one or when it is unreadable."""
        try:
            data = json.loads((self.path / "done.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def read_scores(self) -> dict[str, float | None]:
        """Metric scores computed earlier on these features (``score key -> value``)."""
        p = self.path / "scores.json"
        if not p.is_file():
            return {}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("cached scores %s are damaged (%s); recomputing them", p, exc)
            return {}
        scores = data.get("scores") if isinstance(data, dict) else None
        if not isinstance(scores, dict) or data.get("sha256") != _scores_digest(scores, self.features_digest()):
            log.warning("cached scores %s do not match their checksum (altered or damaged); recomputing them", p)
            return {}
        return scores

    def read_score_seconds(self) -> dict[str, float]:
        """How long each cached score took when it was computed (``score key -> seconds``; what a warm run reports as
        the cold cost). Not part of the scores' checksum: a time is shown, never ranked on."""
        try:
            data = json.loads((self.path / "scores.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        seconds = data.get("seconds") if isinstance(data, dict) else None
        return {k: float(v) for k, v in seconds.items() if isinstance(v, (int, float))} \
            if isinstance(seconds, dict) else {}

    def write_scores(self, scores: dict[str, float | None], seconds: dict[str, float] | None = None) -> None:
        """Add ``scores`` (and how long each took, ``seconds``) to the entry's scores."""
        merged = {**self.read_scores(), **scores}
        times = {k: v for k, v in {**self.read_score_seconds(), **(seconds or {})}.items() if k in merged}
        try:
            write_json_atomic(self.path / "scores.json", {"scores": merged, "seconds": times,
                                                           "sha256": _scores_digest(merged, self.features_digest())})
        except (OSError, OutputError) as exc:
            raise _cache_error(exc, self.path) from None

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
