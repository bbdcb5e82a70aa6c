"""Source-class scores for pruning: which source classes matter for a target. A method is
``fn(ctx) -> scores [C_source]`` (higher: keep first); register one with ``@METHODS.register(name, ...)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._registry import Registry

METHODS: Registry[Callable[..., np.ndarray]] = Registry("pruning method")


@dataclass
class Context:
    source: Any  # Dataset (its train split)
    target: Any  # Dataset (its train split; labels unread)
    surrogate: Any  # models.Classifier for the source's classes (None for random)
    seed: int
    batch_size: int


@METHODS.register("label_map", summary="the surrogate labels every target example with a source class; keep the "
                  "most frequent", paper="Zhang et al., Selectivity Drives Productivity (DP4TL), NeurIPS 2023",
                  reference="OPTML-Group/DP4TL @ 2c16495", needs_surrogate=True)
def label_map(ctx: Context) -> np.ndarray:
    """How many target training examples (un-augmented) the source-trained surrogate assigns to each source class."""
    pred = ctx.surrogate.logits(ctx.target, ctx.batch_size).argmax(1)
    return np.bincount(pred, minlength=ctx.source.num_classes).astype(np.float64)


@METHODS.register("feature_map", summary="each target example counts for the source class whose centroid (in the "
                  "surrogate's feature space) is nearest; keep the most counted",
                  paper="Zhang et al., NeurIPS 2023 (feature mapping)", reference="OPTML-Group/DP4TL @ 2c16495 "
                  "(its script indexes distances by example, not class: ours takes the argmin over centroids)",
                  needs_surrogate=True)
def feature_map(ctx: Context) -> np.ndarray:
    """Per target example, the argmin over the source-class centroids of the Euclidean distance of pooled features;
    the score of a class is how many examples chose it."""
    from ..models import features_and_probs

    fs, _ = features_and_probs(ctx.surrogate.net, ctx.surrogate.inputs(ctx.source), None, ctx.batch_size)
    ft, _ = features_and_probs(ctx.surrogate.net, ctx.surrogate.inputs(ctx.target), None, ctx.batch_size)
    c = ctx.source.num_classes
    centroids = np.stack([fs[ctx.source.labels == k].mean(0) if np.any(ctx.source.labels == k)
                          else np.full(fs.shape[1], np.inf) for k in range(c)])
    d = ((ft ** 2).sum(1)[:, None] - 2 * ft @ centroids.T + (centroids ** 2).sum(1)[None, :])  # [N_target, C]
    nearest = np.nan_to_num(d, nan=np.inf).argmin(1)
    return np.bincount(nearest, minlength=c).astype(np.float64)


@METHODS.register("random", summary="random class scores (seeded): the baseline", needs_surrogate=False)
def random(ctx: Context) -> np.ndarray:
    return np.random.default_rng(ctx.seed).random(ctx.source.num_classes)
