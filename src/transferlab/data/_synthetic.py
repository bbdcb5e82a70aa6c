"""Synthetic image datasets, generated deterministically (no download): shapes and textures, 28x28 grey.

Each family has disjoint class sets for *pretraining* the built-in small zoo (``shapes-source``, ``textures-source``)
and for *targets* (``shapes``, ``textures``), so a model pretrained on one family transfers to a related but new task.
Every example is drawn from its own seed (family, split, index): the same call gives the same bytes everywhere.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

SIZE = 28

SHAPES_SOURCE = ("circle", "square", "triangle", "cross", "ring")
SHAPES_TARGET = ("star", "diamond", "hexagon", "arrow", "crescent", "bar")
TEXTURES_SOURCE = ("stripes_wide", "stripes_narrow", "checker", "dots")
TEXTURES_TARGET = ("zigzag", "crosshatch", "rings", "blobs", "grid", "speckle")


def _rng(*parts: object) -> np.random.Generator:
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None) -> list[tuple]:
    pts = []
    for k in range(n * (2 if inner else 1)):
        a = rot + math.pi * k / n if inner else rot + 2 * math.pi * k / n
        rr = (inner if inner and k % 2 else 1.0) * r
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def draw_shape(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One filled ``kind`` at a random place, size and angle: uint8 [28, 28] with a little noise."""
    from PIL import Image

    im = shape_canvas(kind, rng)
    arr = np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.float64)
    arr += rng.normal(0, rng.uniform(3, 18), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def shape_canvas(kind: str, rng: np.random.Generator) -> object:
    """The filled shape drawn at 4x the final size (a PIL "L" image; downsampled, its edges are anti-aliased)."""
    from PIL import Image, ImageDraw

    s = 4 * SIZE
    im = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.22, 0.38) * s
    cx, cy = rng.uniform(r, s - r, 2)
    rot = rng.uniform(0, 2 * math.pi)
    fg = int(rng.integers(150, 256))
    width = max(2, int(rng.uniform(0.05, 0.12) * s))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=width)
    elif kind == "square":
        d.polygon(_polygon(cx, cy, r, 4, rot), fill=fg)
    elif kind == "triangle":
        d.polygon(_polygon(cx, cy, r, 3, rot), fill=fg)
    elif kind == "cross":
        for a in (rot, rot + math.pi / 2):
            d.line([(cx - r * math.cos(a), cy - r * math.sin(a)), (cx + r * math.cos(a), cy + r * math.sin(a))],
                   fill=fg, width=width)
    elif kind == "star":
        d.polygon(_polygon(cx, cy, r, 5, rot, inner=0.45), fill=fg)
    elif kind == "diamond":
        pts = _polygon(cx, cy, r, 4, rot)
        pts = [(cx + (x - cx) * (0.55 if i % 2 else 1.0), cy + (y - cy) * (0.55 if i % 2 else 1.0))
               for i, (x, y) in enumerate(pts)]
        d.polygon(pts, fill=fg)
    elif kind == "hexagon":
        d.polygon(_polygon(cx, cy, r, 6, rot), fill=fg)
    elif kind == "arrow":
        ca, sa = math.cos(rot), math.sin(rot)
        tail = (cx - r * ca, cy - r * sa)
        tip = (cx + r * ca, cy + r * sa)
        d.line([tail, tip], fill=fg, width=width)
        for side in (-1, 1):
            a = rot + math.pi + side * 0.5
            d.line([tip, (tip[0] + 0.55 * r * math.cos(a), tip[1] + 0.55 * r * math.sin(a))], fill=fg, width=width)
    elif kind == "crescent":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        off = 0.45 * r
        d.ellipse([cx - r + off * math.cos(rot), cy - r + off * math.sin(rot), cx + r + off * math.cos(rot),
                   cy + r + off * math.sin(rot)], fill=0)
    elif kind == "bar":
        ca, sa = math.cos(rot), math.sin(rot)
        d.line([(cx - r * ca, cy - r * sa), (cx + r * ca, cy + r * sa)], fill=fg, width=int(width * 1.8))
    else:  # pragma: no cover - class lists are fixed above
        raise ValueError(kind)
    return im


def draw_texture(kind: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    a = rng.uniform(0, math.pi)
    u = xx * math.cos(a) + yy * math.sin(a)
    v = -xx * math.sin(a) + yy * math.cos(a)
    ph = rng.uniform(0, 2 * math.pi)
    if kind == "stripes_wide":
        z = np.sin(2 * math.pi * u / rng.uniform(9, 14) + ph)
    elif kind == "stripes_narrow":
        z = np.sin(2 * math.pi * u / rng.uniform(3, 5) + ph)
    elif kind == "checker":
        p = rng.uniform(4, 9)
        z = np.sign(np.sin(2 * math.pi * u / p + ph) * np.sin(2 * math.pi * v / p))
    elif kind == "dots":
        p = rng.uniform(5, 8)
        z = np.cos(2 * math.pi * u / p + ph) + np.cos(2 * math.pi * v / p) - 1.2
        z = (z > 0).astype(np.float64) * 2 - 1
    elif kind == "zigzag":
        z = np.sin(2 * math.pi * (u + 2.5 * np.abs(((v / 6 + ph) % 2) - 1)) / rng.uniform(5, 8))
    elif kind == "crosshatch":
        p = rng.uniform(4, 7)
        z = np.maximum(np.sin(2 * math.pi * u / p + ph), np.sin(2 * math.pi * v / p))
    elif kind == "rings":
        c = rng.uniform(4, SIZE - 4, 2)
        z = np.sin(2 * math.pi * np.hypot(xx - c[0], yy - c[1]) / rng.uniform(4, 7) + ph)
    elif kind == "blobs":
        from scipy.ndimage import gaussian_filter

        z = gaussian_filter(rng.standard_normal((SIZE, SIZE)), rng.uniform(1.5, 3.0), mode="wrap")
        z = z / (np.abs(z).max() + 1e-9)
    elif kind == "grid":
        p = rng.uniform(5, 9)
        z = np.maximum(np.cos(2 * math.pi * u / p + ph), np.cos(2 * math.pi * v / p)) > 0.85
        z = z.astype(np.float64) * 2 - 1
    elif kind == "speckle":
        z = (rng.random((SIZE, SIZE)) < rng.uniform(0.08, 0.2)).astype(np.float64) * 2 - 1
    else:  # pragma: no cover
        raise ValueError(kind)
    contrast = rng.uniform(50, 110)
    arr = 128 + contrast * z + rng.normal(0, rng.uniform(4, 20), z.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def generate(family: str, classes: tuple[str, ...], n_per_class: int, split: str,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of each class, in a fixed interleaved order: (uint8 [N, 28, 28], int64 labels)."""
    draw = draw_shape if family == "shapes" else draw_texture
    images, labels = [], []
    for i in range(n_per_class):
        for c, kind in enumerate(classes):
            images.append(draw(kind, _rng(family, kind, split, seed, i)))
            labels.append(c)
    return np.stack(images), np.asarray(labels, dtype=np.int64)
