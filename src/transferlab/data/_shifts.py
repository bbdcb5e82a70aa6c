"""Built-in domain shifts, generated deterministically (no download), for domain adaptation: the same classes as a
built-in source set, drawn differently.

- ``builtin:digits-m``: scikit-learn's digits (the same images and split as ``builtin:digits``), upsampled to
  28 x 28 and blended with random colour textures in the manner of MNIST-M (Ganin & Lempitsky 2015): each channel is
  ``|texture - digit|``, so the digit shows as a change of colour on a busy background rather than as white on
  black.
- ``builtin:shapes-sketch``: the classes of ``builtin:shapes`` drawn as outlines (the edge of the filled shape, 1-2
  pixels wide) over cluttered backgrounds (random strokes and arcs) with noise: the same class as a sketch.

Every image is drawn from its own seed (shift, split, index): the same call gives the same bytes everywhere.
"""

from __future__ import annotations

import numpy as np

from ._synthetic import (
    SHAPES_TARGET,
    SIZE,
    _rng,
    draw_texture,
    shape_canvas,
)

#: textures whose structure is coarser than a digit's strokes
SMOOTH_TEXTURES = ("stripes_wide", "blobs", "rings", "zigzag", "dots")
#: the range of the texture's gain. At 0.3-0.7 a source-only small ResNet (builtin:small_resnet_shapes, 32 px, 6-8
#: epochs, seed 0) reached 13 % on the target (chance: 10 %) and no method moved it; at 0.1-0.3 source-only reached
#: 26 %, DANN 34 % and CDAN+E 35 %: a shift that adaptation can close part of, as MNIST-M is (docs/domain.md)
TEXTURE_GAIN = (0.1, 0.3)


def colour_texture(rng: np.random.Generator) -> np.ndarray:
    """A random colour texture, uint8 [28, 28, 3]: one of the smoother textures of the textures family per channel
    (like the natural-image patches of MNIST-M, not pixel-level noise), each with its own gain (0.1-0.3: low enough
    contrast that the digit stays the strongest structure) and offset."""
    out = np.empty((SIZE, SIZE, 3))
    for ch in range(3):
        t = draw_texture(SMOOTH_TEXTURES[int(rng.integers(len(SMOOTH_TEXTURES)))], rng).astype(np.float64)
        out[..., ch] = np.clip(rng.uniform(*TEXTURE_GAIN) * t + rng.uniform(0, 90), 0, 255)
    return out.astype(np.uint8)


def blend_mnist_m(digit: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """MNIST-M's blend: ``|texture - digit|`` per channel (digit uint8 [H, W], texture uint8 [H, W, 3])."""
    return np.abs(texture.astype(np.int16) - digit.astype(np.int16)[..., None]).astype(np.uint8)


def digits_m(images: np.ndarray, split: str) -> np.ndarray:
    """``images`` (uint8 [N, 8, 8], the digits of ``split``) as MNIST-M-style colour images, uint8 [N, 28, 28, 3]."""
    from PIL import Image

    out = np.empty((len(images), SIZE, SIZE, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        big = np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        out[i] = blend_mnist_m(big, colour_texture(_rng("digits-m", split, i)))
    return out


def _clutter(rng: np.random.Generator, s: int) -> object:
    """A cluttered background at ``s`` x ``s``: random strokes and arcs of middling brightness."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(5, 11))):
        tone = int(rng.integers(40, 130))
        width = int(rng.integers(2, 6))
        if rng.random() < 0.5:
            d.line([tuple(rng.uniform(0, s, 2)), tuple(rng.uniform(0, s, 2))], fill=tone, width=width)
        else:
            c, r = rng.uniform(0, s, 2), rng.uniform(0.1, 0.4) * s
            start = float(rng.uniform(0, 360))
            d.arc([c[0] - r, c[1] - r, c[0] + r, c[1] + r], start, start + float(rng.uniform(60, 240)), fill=tone,
                  width=width)
    return im


def draw_sketch(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A ``builtin:shapes`` class as an outline on clutter with noise: uint8 [28, 28]."""
    from PIL import Image, ImageChops, ImageFilter

    filled = shape_canvas(kind, rng)
    mask = filled.point(lambda v: 255 if v > 0 else 0)
    edge = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(int(rng.choice([5, 7, 9])))))
    stroke = edge.point(lambda v, fg=int(rng.integers(170, 256)): fg if v else 0)
    im = ImageChops.lighter(_clutter(rng, filled.size[0]), stroke)
    arr = np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.float64)
    arr += rng.normal(0, rng.uniform(8, 25), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def shapes_sketch(n_per_class: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` sketches of every ``builtin:shapes`` class, interleaved as ``builtin:shapes`` orders them."""
    images, labels = [], []
    for i in range(n_per_class):
        for c, kind in enumerate(SHAPES_TARGET):
            images.append(draw_sketch(kind, _rng("shapes-sketch", kind, split, i)))
            labels.append(c)
    return np.stack(images), np.asarray(labels, dtype=np.int64)



def quality_mixed(images: np.ndarray, split: str, share: float = 0.5, factor: int = 4) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """``images`` (uint8 [N, H, W] or [N, H, W, C]) with a ``share`` of them (each drawn from its own seed) heavily
    down-sampled: box-averaged to ``H / factor`` and blown up again bilinearly, the way a low-resolution capture is
    upscaled to a model's input size (PETALface's low-quality inputs). Returns (images, low: bool [N])."""
    from PIL import Image

    out, low = images.copy(), np.zeros(len(images), dtype=bool)
    for i, im in enumerate(images):
        if _rng("quality-mixed", split, i).random() < share:
            h, w = im.shape[:2]
            small = Image.fromarray(im).resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.BOX)
            out[i] = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))
            low[i] = True
    return out, low
