"""The built-in domain shifts: the same classes and labels as their source sets, drawn differently, deterministic."""

from __future__ import annotations

import hashlib

import numpy as np

from transferlab.data import load_dataset
from transferlab.data._shifts import blend_mnist_m, digits_m, draw_sketch, shapes_sketch
from transferlab.data._synthetic import _rng, shape_canvas


def _sha(x: np.ndarray) -> str:
    return hashlib.sha256(x.tobytes()).hexdigest()


def test_digits_m_is_builtin_digits_blended_with_colour_textures():
    src, tgt = load_dataset("builtin:digits", "test"), load_dataset("builtin:digits-m", "test")
    assert tgt.items.shape == (len(src), 28, 28, 3) and tgt.items.dtype == np.uint8
    assert np.array_equal(tgt.labels, src.labels) and tgt.class_names == src.class_names
    assert _sha(digits_m(src.items[:5], "test")) == _sha(tgt.items[:5])  # deterministic, per (split, index)
    assert _sha(digits_m(src.items[:5], "train")) != _sha(tgt.items[:5])  # the split seeds its backgrounds
    colour = tgt.items.astype(float)
    assert np.abs(colour[..., 0] - colour[..., 1]).mean() > 10  # colour, not grey
    assert len({_sha(x) for x in tgt.items[:50]}) == 50


def test_the_mnist_m_blend():
    digit = np.array([[0, 255], [100, 200]], dtype=np.uint8)
    texture = np.stack([np.full((2, 2), 50), np.full((2, 2), 255), np.full((2, 2), 0)], -1).astype(np.uint8)
    out = blend_mnist_m(digit, texture)
    assert out.tolist() == [[[50, 255, 0], [205, 0, 255]], [[50, 155, 100], [150, 55, 200]]]


def test_shapes_sketch_has_the_classes_of_shapes_as_outlines():
    src, tgt = load_dataset("builtin:shapes", "test"), load_dataset("builtin:shapes-sketch", "test")
    assert tgt.items.shape == src.items.shape and np.array_equal(tgt.labels, src.labels)
    assert tgt.class_names == src.class_names
    x, y = shapes_sketch(2, "test")
    assert _sha(x) == _sha(tgt.items[:12]) and np.array_equal(y, tgt.labels[:12])
    # an outline: inside the filled shape, the sketch is much darker than the filled drawing
    from PIL import Image, ImageFilter

    rng_a, rng_b = _rng("check", 1), _rng("check", 1)
    filled = shape_canvas("hexagon", rng_a)
    sketch = draw_sketch("hexagon", rng_b)  # draws the same shape first, from the same generator state
    inner = np.asarray(filled.point(lambda v: 255 if v else 0).filter(ImageFilter.MinFilter(15))
                       .resize((28, 28), Image.Resampling.BOX)) == 255
    assert inner.sum() > 5
    full = np.asarray(filled.resize((28, 28), Image.Resampling.BOX), dtype=float)
    assert sketch[inner].mean() < 0.5 * full[inner].mean()


def test_builtin_shapes_bytes_are_pinned():
    """The shape drawing was split into shape_canvas (for the sketches): builtin:shapes must not change (its bytes
    key the feature cache and every fingerprint). sha256 of the first 12 test images, taken before the split."""
    x = load_dataset("builtin:shapes", "test").items[:12]
    assert _sha(x) == PINNED_SHAPES


PINNED_SHAPES = "2a5537c75544676ecb12b3bf0a21de6bb108c5f48a1b3075fcb0e99a4975c2d1"  # computed with the code of 8106952
