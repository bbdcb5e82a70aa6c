"""The adaptation-method registry: a method is one function, ``prepare(model, ctx, **options) -> Prepared``,
registered with one decorator; ``fit()`` and ``load()`` name no method.

``prepare`` changes ``model`` in place (freezes, wraps, injects) and returns a :class:`Prepared`: what trains and how
(the parameters, learning-rate scales, extra loss terms, or a whole objective), how the result is stored (full
weights or a peft adapter; a ``structure`` the loader rebuilds), and, for methods that train in several phases, a
``run`` that drives the one training loop itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._registry import Registry, discover


@dataclass
class FitContext:
    """What a method may need besides the model: the zoo backbone it came from, the training split (already without
    its validation part), the image size, the seed."""

    backbone: Any
    dataset: Any
    image_size: int | None
    seed: int = 0


@dataclass
class TrainJob:
    """What a custom ``run`` trains on: the preprocessed splits, the loop's config, where to checkpoint."""

    train_data: Any
    val_data: Any
    config: Any
    progress: bool = False
    checkpoint_dir: Path | None = None


@dataclass
class Outcome:
    """What a custom ``run`` reports back: the per-epoch history and the selected validation accuracy."""

    history: list[dict[str, float]]
    val_accuracy: float | None


@dataclass
class Prepared:
    """What a method hands ``fit``.

    ``model`` (possibly a wrapper like peft's) and ``params`` (what the optimiser updates; empty when ``prepare``
    already fitted everything, as the linear probe does); ``regularizer(model, x, logits)``, ``lr_scales``
    (``id(param) -> multiplier``) and ``freeze_norm_stats`` configure the default supervised objective, or
    ``objective`` replaces it. ``weights``: ``"peft"`` stores peft's adapter format (:meth:`stored_as` decides
    between the whole state dict and the trained tensors otherwise). ``structure``: the card entry
    the loader rebuilds added modules from (``{"kind": <models.STRUCTURES entry>, ...}``). ``run(prepared, job)``:
    custom training through the one loop (several phases) on a :class:`TrainJob`; ``files``: extra files written beside the model
    (``name -> writer(path)``); ``metrics``: extra entries for ``metrics.json`` (filled in by ``run`` if it wants).
    """

    model: Any
    params: list[Any]
    regularizer: Callable[[Any, Any, Any], Any] | None = None
    lr_scales: dict[int, float] = field(default_factory=dict)
    freeze_norm_stats: bool = False
    objective: Any = None
    weights: Literal["state_dict", "peft"] = "state_dict"
    structure: dict[str, Any] = field(default_factory=dict)
    run: Callable[[Prepared, Any], Outcome] | None = None
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def stored_as(self, from_init: bool = False) -> Literal["state_dict", "peft", "trained"]:
        """How the fitted weights are saved (the card's ``weights``): ``"peft"`` for peft adapters; ``"trained"``
        (only what the fit changed, loaded over the base model reference, as peft does) when the method adds modules
        (a ``structure``: adapter, mam, scalearn) and trains less than :data:`TRAINED_SHARE` of the parameters;
        the whole ``"state_dict"`` otherwise. Methods that keep the base architecture (head, linear_probe, bitfit,
        partial, sparse, finetune) keep the whole network: their output opens in plain timm, merges, and needs no
        base. A fit started from another fit (``from_init``) keeps it too: its frozen weights are not the base's."""
        if self.weights != "state_dict" or not self.structure or from_init:
            return self.weights
        trained = sum(p.numel() for p in self.params)
        total = sum(p.numel() for p in self.model.parameters())
        return "trained" if trained < TRAINED_SHARE * total else "state_dict"


#: a fit that adds modules and trains less than this share of its network's parameters saves only what it trained
TRAINED_SHARE = 0.5


#: Every module of the package registers methods except these (infrastructure): a new method is one file.
INFRASTRUCTURE = ("_api", "_cam", "_pairs", "_registry", "_sla")
method_modules = discover(__file__, __package__, INFRASTRUCTURE)


#: name -> prepare(model, ctx, **options) -> Prepared. Metadata: ``summary``, ``paper``, ``default_lr``.
METHODS: Registry[Callable[..., Prepared]] = Registry("fit method", modules=method_modules)
