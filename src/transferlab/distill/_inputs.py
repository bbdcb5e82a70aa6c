"""One example, every network's input: the student and each teacher see the same (augmented) view of an image, each
at its own size and normalisation; texts are tokenised by each network's tokenizer. Unlabelled examples carry the
label -1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data import Dataset


class Views:
    """Map-style torch dataset of ``{"x": student input, "v1": ..., "y": label}`` over labelled and unlabelled parts.

    ``feeds``: the distinct inputs (index 0: the student's), as :class:`~transferlab.distill._members.Member.feed`
    tuples (images: size, mean, std and resize interpolation, each network's own), with ``tokenizers`` for text
    feeds. ``augment``: one random resized crop (scale 0.7–1) and horizontal flip
    per example, drawn once and applied to every feed, so teachers and student see the same view."""

    def __init__(self, parts: Sequence[tuple[Dataset, bool]], feeds: Sequence[tuple[Any, ...]],
                 tokenizers: Sequence[Any] = (), augment: bool = False) -> None:
        import torch

        self.parts = [p for p in parts if len(p[0])]
        self.feeds, self.augment = list(feeds), augment
        self.offsets = np.cumsum([0] + [len(ds) for ds, _ in self.parts])
        self.labels = torch.as_tensor(np.concatenate(
            [np.asarray(ds.labels, dtype=np.int64) if labelled else np.full(len(ds), -1, dtype=np.int64)
             for ds, labelled in self.parts]) if self.parts else np.zeros(0, dtype=np.int64))
        self.modality = self.parts[0][0].modality if self.parts else "image"
        self._text: list[Any] = []
        if self.modality == "text":  # all parts tokenised together: one padded length, so batches can mix them
            from ..models import TextTensors

            texts = [t for ds, _ in self.parts for t in ds.items]
            joined = Dataset("views", "text", texts, np.zeros(len(texts), dtype=np.int64), ("_",))
            self._text = [TextTensors(joined, tok, feed[2]).x for feed, tok in zip(self.feeds, tokenizers, strict=True)]
        else:
            from ..models import ImageTensors

            self._readers = [ImageTensors(ds, 8, (0.0,), (1.0,)) for ds, _ in self.parts]  # raw uint8 images

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        part = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return part, i - int(self.offsets[part])

    def __getitem__(self, i: int) -> dict[str, Any]:
        part, j = self._locate(i)
        out: dict[str, Any] = {"y": self.labels[i]}
        if self.modality == "text":
            for k in range(len(self.feeds)):
                out[_key(k)] = self._text[k][i]
            return out
        import torch
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms.v2 import functional as F  # noqa: N812

        from ..zoo import interpolation_mode

        img = self._readers[part]._image(j)  # uint8 [3, H, W]
        if self.augment:
            top, left, h, w = RandomResizedCrop.get_params(img, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3))
            flip = bool(torch.rand(1) < 0.5)
        for k, (_, size, mean, std, *how) in enumerate(self.feeds):
            mode = interpolation_mode(how[0] if how else "bilinear")
            if self.augment:
                v = F.resized_crop(img, top, left, h, w, [size, size], interpolation=mode, antialias=True)
                v = F.horizontal_flip(v) if flip else v
            else:
                v = F.resize(img, [size, size], interpolation=mode, antialias=True)
            out[_key(k)] = F.normalize(F.to_dtype(v, torch.float32, scale=True), list(mean), list(std))
        return out


def _key(k: int) -> str:
    return "x" if k == 0 else f"v{k}"


def feed_keys(feeds: Sequence[tuple[Any, ...]], member_feeds: Sequence[tuple[Any, ...]]) -> list[str]:
    """For each member, the batch key of its input."""
    return [_key(list(feeds).index(f)) for f in member_feeds]
