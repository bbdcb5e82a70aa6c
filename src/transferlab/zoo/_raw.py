"""The raw-input baselines: ``builtin:pixels`` (PCA of the pixels or feature arrays) and ``builtin:tfidf`` (truncated
SVD of TF-IDF), computed on the whole dataset at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import ModelError
from ._backbone import Backbone, Batch


class RawInputBackbone(Backbone):
    """Baseline: the raw inputs themselves, PCA-reduced (images, arrays) or TF-IDF + truncated SVD (text).

    Fitted on the dataset being scored (unsupervised), so it is computed for the whole dataset at once.
    """

    dataset_level = True

    def __init__(self, ref: str, modality: str, n_components: int = 128, seed: int = 0) -> None:
        self.ref, self.modality, self.n_components, self.seed = ref, modality, n_components, seed

    def identity(self) -> dict[str, Any]:
        return {"ref": self.ref, "n_components": self.n_components, "seed": self.seed, "version": 2}

    def check_dataset(self, ds: Dataset) -> None:
        if self.modality == "text" and ds.modality != "text":
            raise ModelError(f"{self.ref} is the text baseline; use builtin:pixels for {ds.modality} data")
        if self.modality != "text" and ds.modality == "text":
            raise ModelError(f"{self.ref} is the image/array baseline; use builtin:tfidf for text data")

    def metadata(self) -> dict[str, Any]:
        return {"params": 0, "source_dataset": "none (raw inputs)", "baseline": True}

    @staticmethod
    def _max_components(n: int) -> int:
        """At most half as many components as examples (version 2; was N - 1): N - 1 decorrelated components of N
        points are a full-rank basis of the sample, and standardising each (as the linear probe does) whitens the
        points into a regular simplex where every held-out point lies opposite its class (a 3-class folder of 18
        images: probe accuracy 0.05, kNN 1.0). From 256 examples on, the cap of 128 is what binds, as before."""
        return max(1, n // 2)

    def _batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                 image_size: int | None) -> Iterator[Batch]:
        from sklearn.decomposition import PCA, TruncatedSVD

        if ds.modality == "text":
            from sklearn.feature_extraction.text import TfidfVectorizer

            try:
                x = TfidfVectorizer(sublinear_tf=True, min_df=2 if len(indices) > 50 else 1).fit_transform(
                    [ds.items[i] for i in indices])
            except ValueError as exc:  # "empty vocabulary": no text holds a word of two letters or more
                raise ModelError(f"{self.ref}: the texts of {ds.name} hold no words to count ({exc})") from None
            k = max(1, min(self.n_components, x.shape[1] - 1, self._max_components(len(indices))))
            z = TruncatedSVD(n_components=k, random_state=self.seed).fit_transform(x)
        else:
            from ._images import raw_pixels

            x = raw_pixels(ds, indices)
            k = max(1, min(self.n_components, x.shape[1], self._max_components(len(indices))))
            z = PCA(n_components=k, random_state=self.seed).fit_transform(x)
        z = z.astype(np.float32)
        for start in range(0, len(indices), batch_size):
            yield Batch(z[start:start + batch_size], None)
