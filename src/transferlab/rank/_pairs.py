"""``rank`` on sentence pairs (:mod:`transferlab.data._pairs`): each text model of the zoo, a bi-encoder, encodes
both sides of a pair, ``u = f(text_a)`` and ``v = f(text_b)``, and the metrics score the pair's joint
representation ``[u, v, |u - v|, u * v]`` (Reimers & Gurevych, EMNLP 2019, Sentence-BERT's classification features;
InferSent's before them). A raw-input baseline (TF-IDF) is fitted once on both sides together, so ``u`` and ``v``
share one space. (No zoo entry says it is a cross-encoder, and the built-in text models are bi-encoders; ``fit`` on
pairs trains the same bi-encoder representation by default, or a cross-encoder: :mod:`transferlab.fit._pairs`.)

For a matching task (several candidates per ``text_a``, :func:`~transferlab.data.accuracy_at_k`), each bi-encoder's
zero-shot retrieval is reported too: its candidates ordered by the cosine of ``u`` and ``v``, read from the features
just cached (``ModelScores.metadata["retrieval"]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import Dataset, accuracy_at_k, pair_texts
from ..errors import DataError

#: the version of the joint representation (part of the features' cache key)
JOINT = "u,v,|u-v|,u*v"


@dataclass
class _Batch:
    """What the feature extraction reads of a batch (the zoo's ``Batch``: features, no source head, one layer)."""

    features: np.ndarray
    source_probs: None = None
    layer_dims: None = None


def _sides_dataset(ds: Dataset, indices: np.ndarray) -> Dataset:
    """``text_a`` then ``text_b`` of the pairs ``indices`` as one text dataset (2n texts, placeholder labels)."""
    a, b = pair_texts(ds)  # type: ignore[misc]
    texts = [a[i] for i in indices] + [b[i] for i in indices]
    return Dataset(f"{ds.name}-sides", "text", texts, np.zeros(len(texts), dtype=np.int64), ("?",), ds.split)


class PairBackbone:
    """A text backbone seen through pairs: features ``[u, v, |u - v|, u * v]`` of each pair (see the module)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ref = inner.ref
        self.modality = "text"
        self.dataset_level = bool(getattr(inner, "dataset_level", False))

    def identity(self) -> dict[str, Any]:
        return {"pairs": JOINT, "model": self.inner.identity()}

    def preprocessing(self, image_size: int | None) -> dict[str, Any]:
        return self.inner.preprocessing(image_size)

    def check_dataset(self, ds: Dataset) -> None:
        if pair_texts(ds) is None:
            raise DataError(f"{ds.name} is not pair data: it has no text_a and text_b")
        self.inner.check_dataset(ds)

    def metadata(self) -> dict[str, Any]:
        return {**self.inner.metadata(), "pair_encoding": "bi-encoder: " + JOINT}

    def token_lengths(self, texts: list[str]) -> np.ndarray | None:
        return self.inner.token_lengths(texts)

    def batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int, image_size: int | None,
                all_layers: bool = False) -> Iterator[Any]:
        """Both sides of the pairs ``indices`` encoded in one pass (a dataset-level baseline fits on them all),
        joined per pair; ``all_layers`` is not read: a pair's features are its output's."""
        sides = _sides_dataset(ds, indices)
        feats = np.concatenate([b.features for b in self.inner.batches(
            sides, np.arange(len(sides)), batch_size=batch_size, image_size=image_size)])
        joint = join_sides(feats[:len(indices)], feats[len(indices):])
        for start in range(0, len(indices), batch_size):
            yield _Batch(joint[start:start + batch_size])


def join_sides(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[u, v, |u - v|, u * v]`` row by row (float32)."""
    u, v = np.asarray(u, dtype=np.float32), np.asarray(v, dtype=np.float32)
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def pair_backbones(backbones: list[Any], ds: Dataset) -> list[Any]:
    """The zoo's backbones as ``rank`` scores them on ``ds`` (in this process or in a backend's job): through
    :class:`PairBackbone` on pair data; unchanged on any other data."""
    return backbones if pair_texts(ds) is None else [PairBackbone(b) for b in backbones]


def add_retrieval(setup: Any, runs: list[Any]) -> None:
    """Each model's zero-shot retrieval on a matching task (:func:`retrieval`) into its run's ``meta``, from its
    features (read back from the feature cache the scoring just wrote; recomputed without one, or where another
    backend's machines cached them)."""
    from ..zoo import extract_features

    if pair_texts(setup.ds) is None:
        return
    for run, backbone in zip(runs, setup.backbones, strict=True):
        feats = extract_features(backbone, setup.ds, batch_size=setup.batch_size, cache=setup.cache)
        found = retrieval(feats.features, setup.ds)
        if found is None:
            return  # not a matching task: no model has a retrieval score
        run.meta["retrieval"] = found


def retrieval(features: np.ndarray, ds: Dataset, ks: tuple[int, ...] = (1, 3)) -> dict[str, float] | None:
    """Zero-shot retrieval of a bi-encoder on a matching task: accuracy@k of the cosine of ``u`` and ``v`` (the
    first two quarters of the joint features); None where ``ds`` is not a matching task."""
    d = features.shape[1] // 4
    u, v = np.asarray(features[:, :d], dtype=np.float64), np.asarray(features[:, d:2 * d], dtype=np.float64)
    cos = (u * v).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-12)
    try:
        return accuracy_at_k(ds, cos, ks)
    except DataError:
        return None
