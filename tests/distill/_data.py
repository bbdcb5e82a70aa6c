"""Tiny separable colour images for the distillation tests."""

from __future__ import annotations

import numpy as np

from transferlab.data import Dataset

CLASSES = ("red", "green", "blue")


def colours(n_per_class: int, split: str, seed: int, classes: tuple[str, ...] = CLASSES) -> Dataset:
    """Each class has its own dominant colour channel (noise elsewhere): separable in a few steps."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for ci in range(len(classes)):
        for _ in range(n_per_class):
            arr = rng.integers(0, 90, (16, 16, 3), dtype=np.uint8)
            arr[..., ci % 3] += 140
            items.append(arr)
            labels.append(ci)
    return Dataset(f"colours-{split}", "image", np.stack(items), np.array(labels), classes, split=split)
