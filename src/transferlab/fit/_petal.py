"""PETALface as a fit method (Narayan et al., "PETAL|face: Parameter Efficient Transfer Learning for Low-resolution
Face Recognition", WACV 2025): two peft LoRA sets on the same layers, one for high- and one for low-quality inputs,
mixed per example by an image-quality score (:mod:`transferlab.models._petal`: the proxy, the mix, the saved
structure). Both sets and the new head train jointly, as in the paper; the layers adapted are those ``--method lora``
adapts (every Linear and non-grouped Conv2d but the head, or ``target_modules``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import TransferlabError
from ._peft import _targets
from ._registry import METHODS, FitContext, Prepared

#: percentiles of the training images' quality proxy that map to q = 0 and q = 1
CALIBRATION = (5.0, 95.0)


def calibrate(ctx: FitContext, n: int = 512) -> tuple[float, float]:
    """(lo, hi): the :data:`CALIBRATION` percentiles of the quality proxy over (up to ``n`` of) the training images,
    preprocessed as the model sees them (no augmentation)."""
    import torch

    from ..models import ImageTensors, quality_proxy

    ds = ctx.dataset
    if len(ds) > n:
        ds = ds.stratified_sample(n, seed=ctx.seed)
    tensors = ImageTensors(ds, int(ctx.image_size or 32), tuple(ctx.backbone.mean), tuple(ctx.backbone.std))
    x = torch.stack([tensors[i][0] for i in range(len(tensors))])
    s = quality_proxy(x).numpy().astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(s, CALIBRATION))
    if not hi > lo:  # every training image of one quality: spread the map around it
        lo, hi = lo - 1.0, hi + 1.0
    return lo, hi


@METHODS.register("petal", summary="PETALface: two LoRA sets (high/low quality) mixed per example by an "
                  "image-quality proxy (effective resolution)", default_lr=1e-3,
                  paper="Narayan et al., PETAL|face, WACV 2025")
def petal(model: Any, ctx: FitContext, r: int = 8, alpha: int | None = None,
          target_modules: list[str] | str | None = None, head_lr_scale: float = 1.0) -> Prepared:
    """``r``/``alpha``: each LoRA set's rank and scale numerator (default ``2 r``), as for ``lora``; the head at
    ``head_lr_scale`` times the learning rate. The quality map is calibrated on the training images: give a training
    split that holds both qualities (the paper trains on high- and low-resolution faces)."""
    from ..models import inject_petal_, petal_structure

    if getattr(ctx.backbone, "modality", "image") != "image":
        raise TransferlabError("petal mixes by image quality: choose an image model")
    if r < 1 or not head_lr_scale > 0:
        raise TransferlabError(f"petal: r must be >= 1 and head_lr_scale > 0, got r={r}, head_lr_scale={head_lr_scale}")
    targets, _ = _targets(model, target_modules)
    lo, hi = calibrate(ctx)
    a = int(alpha or 2 * r)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = inject_petal_(model, targets, r, a, lo, hi)
    head = list(model.get_classifier().parameters())
    for p in adapters + head:
        p.requires_grad_(True)
    scales = {} if head_lr_scale == 1 else {id(p): float(head_lr_scale) for p in head}
    return Prepared(model, adapters + head, lr_scales=scales, structure=petal_structure(targets, r, a, lo, hi))
