"""PETALface as a fit method (Narayan et al., "PETAL|face: Parameter Efficient Transfer Learning for Low-resolution
Face Recognition", WACV 2025): two peft LoRA sets on the same layers, one for high- and one for low-quality inputs,
mixed per example by an image-quality score (:mod:`transferlab.models._petal`: the proxy, the mix, the saved
structure). Both sets and the new head train jointly, as in the paper; the layers adapted are those ``--method lora``
adapts (every Linear and non-grouped Conv2d but the head, or ``target_modules``). Where the training data has a quality
column (:mod:`transferlab.data._quality`), each example's column value replaces the proxy in training and validation
(every example carries it through the loop's batches), and in the test prediction and ``predict`` wherever those data
have the column too (:func:`transferlab.models._infer.infer` tells the model which examples each batch holds)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import QUALITY
from ..errors import TransferlabError
from ..train import Supervised
from ._peft import _targets
from ._registry import METHODS, FitContext, Outcome, Prepared, TrainJob

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
    tensors = ImageTensors(ds, int(ctx.image_size or 32), tuple(ctx.backbone.mean), tuple(ctx.backbone.std),
                           interpolation=getattr(ctx.backbone, "interpolation", "bilinear"))
    x = torch.stack([tensors[i][0] for i in range(len(tensors))])
    s = quality_proxy(x).numpy().astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(s, CALIBRATION))
    if not hi > lo:  # every training image of one quality: spread the map around it
        lo, hi = lo - 1.0, hi + 1.0
    return lo, hi


class _Rated:
    """A torch dataset of ``(x, y)`` whose examples become ``{"x", "y", "quality"}``: the loop's batches carry each
    example's quality column value."""

    def __init__(self, data: Any, quality: np.ndarray) -> None:
        self.data, self.quality = data, np.asarray(quality, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, y = self.data[i]
        return {"x": x, "y": y, QUALITY: float(self.quality[i])}


class _QualityFed(Supervised):
    """The supervised objective with each batch's quality column handed to the mix before the forward."""

    def __init__(self, mixer: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.mixer = mixer

    def _give(self, batch: Any) -> None:
        self.mixer.given = batch[QUALITY].float()

    def step(self, batch: Any, modules: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
        self._give(batch)
        return super().step(batch, modules, ctx)

    def evaluate(self, batch: Any, modules: Any) -> dict[str, Any]:
        self._give(batch)
        return super().evaluate(batch, modules)


def _column(data: Any) -> np.ndarray | None:
    return None if data is None else getattr(getattr(data, "ds", None), "meta", {}).get(QUALITY)


def _train_on_column(prep: Prepared, job: TrainJob, options: dict[str, Any]) -> Outcome:
    """One run of the loop on the examples with their quality column (training and validation)."""
    from ..train import train

    val = job.val_data
    q_val = _column(val)
    if val is not None and q_val is None:
        raise TransferlabError("petal: the training data has a quality column but its validation split has none")
    objective = _QualityFed(prep.model.petal, params=prep.params, lr_scales=prep.lr_scales,
                            options={"method": "petal", "options": options, "quality": "column"})
    result = train({"model": prep.model}, objective, _Rated(job.train_data, _column(job.train_data)), job.config,
                   val_data=None if val is None else _Rated(val, q_val), progress=job.progress,
                   checkpoint_dir=job.checkpoint_dir)
    prep.metrics.update(best_epoch=result.best_epoch, stopped_early=result.stopped_early)
    return Outcome(result.history, result.best_val_accuracy)


@METHODS.register("petal", summary="PETALface: two LoRA sets (high/low quality) mixed per example by an "
                  "image-quality proxy (effective resolution) or the data's quality column", default_lr=1e-3,
                  paper="Narayan et al., PETAL|face, WACV 2025")
def petal(model: Any, ctx: FitContext, r: int = 8, alpha: int | None = None,
          target_modules: list[str] | str | None = None, head_lr_scale: float = 1.0, spread: float = 1.0,
          center: float = 0.5) -> Prepared:
    """``r``/``alpha``: each LoRA set's rank and scale numerator (default ``2 r``), as for ``lora``; the head at
    ``head_lr_scale`` times the learning rate. The quality map is calibrated on the training images: give a training
    split that holds both qualities (the paper trains on high- and low-resolution faces). ``spread`` >= 0 and
    ``center`` in [0, 1]: the ``hq`` set's weight is ``clip(0.5 + spread (q - center), 0, 1)`` (the defaults: ``q``
    itself; ``spread`` 0: both sets always at 1/2). A quality column of the training data (``meta["quality"]``)
    replaces the proxy (``metrics.json``: ``quality_source``)."""
    from ..models import inject_petal_, petal_structure

    if getattr(ctx.backbone, "modality", "image") != "image":
        raise TransferlabError("petal mixes by image quality: choose an image model")
    if r < 1 or not head_lr_scale > 0 or not spread >= 0 or not 0 <= center <= 1:
        raise TransferlabError(f"petal: r must be >= 1, head_lr_scale > 0, spread >= 0 and center in [0, 1], got "
                               f"r={r}, head_lr_scale={head_lr_scale}, spread={spread}, center={center}")
    targets, _ = _targets(model, target_modules)
    lo, hi = calibrate(ctx)
    a = int(alpha or 2 * r)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = inject_petal_(model, targets, r, a, lo, hi, spread, center)
    head = list(model.get_classifier().parameters())
    for p in adapters + head:
        p.requires_grad_(True)
    scales = {} if head_lr_scale == 1 else {id(p): float(head_lr_scale) for p in head}
    column = ctx.dataset.meta.get(QUALITY) is not None
    options = {"r": r, "alpha": alpha, "target_modules": target_modules, "head_lr_scale": head_lr_scale,
               "spread": spread, "center": center}
    return Prepared(model, adapters + head, lr_scales=scales,
                    structure=petal_structure(targets, r, a, lo, hi, spread, center),
                    run=(lambda prep, job: _train_on_column(prep, job, options)) if column else None,
                    metrics={"quality_source": "column" if column else "proxy"})
