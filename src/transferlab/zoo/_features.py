"""Batched feature extraction with a resumable on-disk cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import ModelError
from ._backbone import Backbone
from ._cache import FeatureCache, cache_key
from ._layers import averaged_layers, check_layers, mean_of_layers, split_layers

log = logging.getLogger(__name__)

#: progress(advance_by_n_examples) callback type
Progress = Callable[[int], None]


@dataclass
class Features:
    """Pooled features of one model on one dataset (float32), with source-head probabilities where the model has one."""

    features: np.ndarray
    source_probs: np.ndarray | None
    model: str
    cache_hit: bool = False
    seconds: float = 0.0  # wall time of forward passes (0 on a full cache hit)
    total_seconds: float = 0.0  # including cache I/O
    meta: dict[str, Any] = field(default_factory=dict)
    #: the extraction that computed these features (this one, or the cold run recorded in the cache entry):
    #: forward_seconds, extract_seconds, chunks_computed of chunks, recorded_at; None when a cache entry written
    #: before timings were recorded is read whole
    cold: dict[str, Any] | None = None
    #: ``layers="best"``: every layer's features, in order (the last is ``features``, the output); else None
    layers: list[np.ndarray] | None = None


def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    *,
    image_size: int | None = None,
    batch_size: int = 64,
    chunk_size: int = 512,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
    device: str | None = None,
    precision: str | None = None,
    layers: str = "last",
) -> Features:
    """Features of ``dataset`` under ``backbone``; read from / written to ``cache`` (``None``: no cache).

    Work proceeds in chunks of ``chunk_size`` examples, each saved atomically, so an interrupted run resumes at the first
    missing chunk. Baselines fitted on the whole dataset (PCA) are computed in one go. ``device`` (default: the
    current runtime's, else CUDA when available) and ``precision`` (fp32, bf16, fp16): where and how the forward
    passes run; the features always come back as float32 on the CPU. The cache key does not depend on the device
    (features agree across devices and memory formats to float tolerance); it does on a precision other than fp32.
    ``layers`` (:mod:`transferlab.zoo._layers`): ``last``, the model's output; ``mean``, the mean of its layers'
    pooled features; ``best``, every layer's (``Features.layers``, in order; ``features`` is the last, the output).
    Each mode is its own cache entry; ``last`` keeps the keys of before.
    """
    from .._runtime import check_precision, runtime

    with runtime(device, precision):
        return _extract(backbone, dataset, _Request(image_size, batch_size, chunk_size,
                                                    check_precision(precision) if precision is not None else None,
                                                    check_layers(layers)), cache, progress)


@dataclass(frozen=True)
class _Request:
    image_size: int | None
    batch_size: int
    chunk_size: int
    precision: str | None
    layers: str  # last | mean | best

    @property
    def all_layers(self) -> bool:
        return self.layers != "last"


def _extract(backbone: Backbone, dataset: Dataset, req: _Request, cache: FeatureCache | None,
             progress: Progress | None) -> Features:
    from .._runtime import current_precision

    t_start = time.perf_counter()
    backbone.check_dataset(dataset)
    n = len(dataset)
    prec = req.precision or current_precision()
    key = cache_key({"model": backbone.identity(), "preprocessing": backbone.preprocessing(req.image_size),
                     "dataset": dataset.fingerprint, "n": n, **({"precision": prec} if prec != "fp32" else {}),
                     **({"layers": _STORED[req.layers]} if req.all_layers else {})})
    entry = cache.entry(key) if cache is not None else None
    dims: tuple[int, ...] | None = None  # the layers' widths (modes other than last), from a chunk
    step = n if backbone.dataset_level else max(1, req.chunk_size)
    starts = list(range(0, n, step))
    feats: list[np.ndarray] = []
    probs: list[np.ndarray | None] = []
    forward = 0.0
    computed = 0
    for ci, start in enumerate(starts):
        idx = np.arange(start, min(start + step, n))
        hit = entry.read_chunk(ci) if entry is not None else None
        if hit is not None and len(hit[0]) == len(idx) and _fits(hit, dims, req.layers):
            f, p, dims = hit
            if progress:
                progress(len(idx))
        else:
            t0 = time.perf_counter()
            f, p, dims = _compute(backbone, dataset, idx, req, progress)
            forward += time.perf_counter() - t0
            if entry is not None and np.isfinite(np.sum(f, dtype=np.float64)):
                entry.write_chunk(ci, f, p, dims)
            elif entry is not None:  # never cache broken outputs: a rerun after a fix must recompute them
                log.warning("%s: non-finite features in examples %d-%d; not cached", backbone.ref, idx[0], idx[-1])
            computed += 1
        feats.append(f)
        probs.append(p)
    features = np.concatenate(feats)
    source_probs = None if any(p is None for p in probs) else np.concatenate(probs)
    cold = _cold(entry, forward, time.perf_counter() - t_start, computed, len(starts))
    layer_info = _layer_info(req.layers, dims)
    if entry is not None and computed and np.isfinite(np.sum(features, dtype=np.float64)):
        entry.mark_done({"model": backbone.ref, "dataset": dataset.name, "n": n, "dim": int(features.shape[1]),
                         "identity": backbone.identity(), "preprocessing": backbone.preprocessing(req.image_size),
                         "cold": cold, **({"layers": layer_info} if layer_info else {})})
    per_layer = split_layers(features, dims) if req.layers == "best" and dims else None
    features = per_layer[-1] if per_layer else features
    meta = {"cache_key": key, "dim": int(features.shape[1]), "chunks": len(starts), "chunks_computed": computed}
    return Features(features, source_probs, backbone.ref, cache_hit=computed == 0, seconds=forward,
                    total_seconds=time.perf_counter() - t_start,
                    meta={**meta, "layers": layer_info} if layer_info else meta, cold=cold, layers=per_layer)


#: what the cache entry of each layer mode holds (part of its key): the mean, or every layer side by side
_STORED = {"mean": "mean", "best": "all"}


def _compute(backbone: Backbone, dataset: Dataset, idx: np.ndarray, req: _Request,
             progress: Progress | None) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...] | None]:
    """One chunk's forward passes: (features as the mode stores them, source probabilities, the layers' widths;
    None for ``last``)."""
    fb, pb, dims = [], [], None
    kw = {"all_layers": True} if req.all_layers else {}
    for batch in backbone.batches(dataset, idx, batch_size=req.batch_size, image_size=req.image_size, **kw):
        fb.append(batch.features)
        pb.append(batch.source_probs)
        dims = batch.layer_dims or dims
        if progress:
            progress(len(batch.features))
    f = np.concatenate(fb).astype(np.float32, copy=False)
    p = None if any(b is None for b in pb) else np.concatenate(pb).astype(np.float32, copy=False)
    if len(f) != len(idx):
        raise ModelError(f"{backbone.ref} returned {len(f)} feature rows for {len(idx)} inputs")
    if not req.all_layers:
        return f, p, None
    dims = tuple(dims or (f.shape[1],))  # a backbone without inner layers: its output, one layer
    return (mean_of_layers(f, dims) if req.layers == "mean" else f), p, dims


def _fits(hit: tuple[np.ndarray, np.ndarray | None, tuple[int, ...] | None], dims: tuple[int, ...] | None,
          mode: str) -> bool:
    """Whether a cached chunk is what its mode stores: no layers for ``last``; else the layers' widths (the same as
    the other chunks') and the width they make (the mean: the output's; best: all layers')."""
    f, _, got = hit
    if mode == "last" or got is None:
        return mode == "last" and got is None
    return (dims is None or got == dims) and f.shape[1] == (sum(got) if mode == "best" else got[-1])


def _layer_info(mode: str, dims: tuple[int, ...] | None) -> dict[str, Any] | None:
    """What a mode other than ``last`` read: its layers' widths and, for the mean, which layers it averaged."""
    if mode == "last" or dims is None:
        return None
    return {"mode": mode, "count": len(dims), "dims": list(dims),
            **({"averaged": averaged_layers(dims)} if mode == "mean" else {})}


def _cold(entry: Any, forward: float, elapsed: float, computed: int, chunks: int) -> dict[str, Any] | None:
    """The timings of the extraction that computed these features: this one when it computed every chunk; else
    the one the cache entry recorded (a warm read, or a damaged chunk recomputed: the cold record is kept); else
    this one, partial (a resumed run: ``chunks_computed`` < ``chunks``); None for a whole entry that recorded none."""
    import datetime as dt

    earlier = entry.read_done().get("cold") if entry is not None and computed < chunks else None
    if isinstance(earlier, dict):
        return earlier
    if not computed:
        return None
    return {"forward_seconds": forward, "extract_seconds": elapsed, "chunks_computed": computed, "chunks": chunks,
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
