"""Texts as images, for the vision zoo (``rank --as-image``, ``fit --as-image``): the seed paper "Classifying Textual
Data with Pre-trained Vision Models through Transfer Learning and Data Transformations" renders text embeddings as
2-D images so that networks pretrained on images can be ranked and fine-tuned on text data.

Our transformation (one text at a time, no statistic of the dataset, so a train and a test split map alike):

1. the text's sentence embedding ``e`` from a text model (default ``builtin:minilm_l6``: 384 values, L2-normalised;
   an embedding that is not normalised is normalised here), through the feature cache;
2. each value to a grey level: ``min(255, floor(256 * clip(0.5 + e_i * sqrt(D) / 6, 0, 1)))`` (a unit vector's values
   have a standard deviation near ``1 / sqrt(D)``: +-3 of them span the grey range; 0 is grey 128);
3. laid out row by row on the smallest square that holds ``D`` values (384 -> 20 x 20; the 16 cells left are
   mid-grey, 128).

The vision models then resize the ``S x S`` grey image to their input size as they do any image. The image keeps
exactly what the embedding holds (quantised to 256 levels): a vision model can only re-read it, so expect it to do
no better than a linear probe on the embedding itself (docs/benchmarks.md measures how much worse).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import TransferlabError

#: the text model whose embeddings become images unless another is named
DEFAULT_EMBEDDER = "builtin:minilm_l6"


def embedding_images(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings ``[N, D]`` as grey images ``[N, S, S]`` uint8, ``S = ceil(sqrt(D))`` (steps 2 and 3 above)."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or not e.shape[1]:
        raise TransferlabError(f"embeddings must be [N, D], got shape {e.shape}")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    n, d = e.shape
    side = math.isqrt(d - 1) + 1
    grey = np.minimum(255, np.floor(256.0 * np.clip(0.5 + e * math.sqrt(d) / 6.0, 0.0, 1.0))).astype(np.uint8)
    out = np.full((n, side * side), 128, dtype=np.uint8)
    out[:, :d] = grey
    return out.reshape(n, side, side)


def texts_as_images(ds: Dataset, embedder: str = DEFAULT_EMBEDDER, *, batch_size: int = 64,
                    cache_dir: Any = None, use_cache: bool = True) -> Dataset:
    """A text dataset as an image dataset: each text's embedding under ``embedder`` as a grey image (see the
    module); labels, class names and split kept. An image dataset is returned as it is."""
    if ds.modality == "image":
        return ds
    if ds.modality != "text":
        raise TransferlabError(f"--as-image turns texts into images; {ds.name} holds {ds.modality} data")
    from ..zoo import FeatureCache, extract_features, resolve_model

    backbone = resolve_model(embedder)
    if backbone.modality != "text":
        raise TransferlabError(f"--as-image embeds texts with a text model; {embedder} takes {backbone.modality}")
    cache = FeatureCache(cache_dir) if use_cache else None
    feats = extract_features(backbone, ds, batch_size=batch_size, cache=cache).features
    return Dataset(f"{ds.name}-as-image", "image", embedding_images(feats), ds.labels, ds.class_names, ds.split,
                   {"source": f"{ds.meta.get('source', ds.name)} as images of {embedder} embeddings",
                    "as_image": {"embedder": embedder, "dim": int(feats.shape[1])}})
