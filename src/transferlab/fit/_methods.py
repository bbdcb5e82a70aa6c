"""Adaptation methods that choose what trains: full fine-tuning, the last k blocks, biases only, the head only.

Each ``prepare(model, **options)`` freezes the model in place and returns ``(model, trainable parameters)`` (the new
classification head always trains; methods that wrap the model, like peft's, return the wrapper). Blocks come from timm's own parameter grouping (``group_matcher``), so
``partial`` means the same thing for EfficientNets, ResNets and ViTs.
"""

from __future__ import annotations

from typing import Any

from ..errors import TransferlabError
from ._registry import METHODS


def _head_params(model: Any) -> list[Any]:
    get = getattr(model, "get_classifier", None)
    if get is None:
        raise TransferlabError(f"{type(model).__name__} has no get_classifier(): fit needs a timm-style model")
    return list(get().parameters())


def _freeze_all_but(model: Any, keep: list[Any]) -> list[Any]:
    ids = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return [p for p in model.parameters() if id(p) in ids]


def parameter_groups(model: Any) -> list[list[Any]]:
    """Parameters in forward order, grouped by block (stem first, head last), via timm's ``group_matcher``."""
    try:
        from timm.models import group_parameters

        groups = group_parameters(model, model.group_matcher(coarse=True))
        by_name = dict(model.named_parameters())
        ordered = [[by_name[n] for n in names] for _, names in sorted(groups.items(), key=lambda kv: kv[0])]
        if len(ordered) >= 2:
            return ordered
    except (AttributeError, NotImplementedError, TypeError):
        pass
    return [list(child.parameters()) for child in model.children() if any(True for _ in child.parameters())]


@METHODS.register("finetune", summary="full fine-tuning: every parameter trains", default_lr=3e-4,
                  paper="Kornblith et al., Do Better ImageNet Models Transfer Better?, CVPR 2019")
def finetune(model: Any) -> tuple[Any, list[Any]]:
    return model, _freeze_all_but(model, list(model.parameters()))


@METHODS.register("partial", summary="the last k blocks and the head train (k=2 by default)", default_lr=1e-3,
                  paper="Yosinski et al., How transferable are features in deep neural networks?, NeurIPS 2014")
def partial(model: Any, blocks: int = 2) -> tuple[Any, list[Any]]:
    if blocks < 0:
        raise TransferlabError(f"partial: blocks must be >= 0, got {blocks}")
    groups = parameter_groups(model)
    head = _head_params(model)
    keep = [p for g in groups[len(groups) - 1 - blocks:] for p in g] if blocks else []
    return model, _freeze_all_but(model, keep + head)


@METHODS.register("bitfit", summary="only bias terms (incl. normalisation shifts) and the head train", default_lr=1e-3,
                  paper="Ben Zaken et al., BitFit, ACL 2022")
def bitfit(model: Any) -> tuple[Any, list[Any]]:
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return model, _freeze_all_but(model, biases + _head_params(model))


@METHODS.register("head", summary="the new classification head trains on a frozen backbone (end to end)",
                  default_lr=1e-2, paper="linear evaluation protocol")
def head(model: Any) -> tuple[Any, list[Any]]:
    return model, _freeze_all_but(model, _head_params(model))
