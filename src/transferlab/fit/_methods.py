"""Adaptation methods that choose what trains: full fine-tuning, the last k blocks, biases only, the head only.

Each ``prepare(model, ctx, **options)`` freezes the model in place and returns a :class:`Prepared` (the model, possibly
a wrapper like peft's; the parameters to train, the new classification head always among them; an optional loss
term). Blocks come from timm's own parameter grouping (``group_matcher``), so ``partial`` means the same thing for
EfficientNets, ResNets and ViTs. ``linear_probe`` fits its head on cached features here and trains nothing in the
loop. ``finetune`` and ``partial`` can start from that probe's head (``head_init="probe"``: LP-FT).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import TransferlabError
from ._registry import METHODS, FitContext, Prepared


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


#: how ``finetune`` and ``partial`` start their new head: timm's random initialisation, or the linear probe's fit
#: (LP-FT: Kumar et al., Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution, ICLR 2022)
HeadInit = Literal["random", "probe"]


def _init_head_(model: Any, ctx: FitContext, head_init: str) -> None:
    """Start ``model``'s head as ``head_init`` says (in place): ``"random"`` leaves it as built; ``"probe"`` writes
    :func:`linear_probe`'s logistic regression on the frozen pretrained features of the training split into it."""
    if head_init == "probe":
        _probe_head_(model, ctx)
    elif head_init != "random":
        raise TransferlabError(f"head_init must be 'random' or 'probe', got {head_init!r}")


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
def finetune(model: Any, ctx: FitContext, l2sp: float = 0.0, l2sp_head: float = 0.0, bss: float = 0.0,
             bss_k: int = 1, head_lr_scale: float = 1.0, head_init: HeadInit = "random") -> Prepared:
    """Full fine-tuning, optionally regularised; the new head learns at ``head_lr_scale`` times the learning rate
    (a fresh head often needs larger steps than the pretrained body: the transferability literature tunes both).
    ``head_init="probe"``: the head starts as the linear probe on the frozen pretrained features (LP-FT), not random.

    ``l2sp``: L2-SP (Li, Grandvalet, Davoine, ICML 2018), ``l2sp/2 * ||w - w0||^2`` over the pretrained weights plus
    ``l2sp_head/2 * ||w_head||^2``. ``bss``: Batch Spectral Shrinkage (Chen et al., NeurIPS 2019),
    ``bss * sum of the bss_k smallest squared singular values`` of the batch's pooled features (the head's input).
    """
    _init_head_(model, ctx, head_init)
    params = _freeze_all_but(model, list(model.parameters()))
    terms = []
    if l2sp > 0 or l2sp_head > 0:
        terms.append(_l2sp(model, l2sp, l2sp_head))
    if bss > 0:
        terms.append(_bss(model, bss, bss_k))
    reg = None if not terms else (lambda m, x, logits: sum(t(m, x, logits) for t in terms))
    return Prepared(model, params, reg, lr_scales=_head_scales(model, head_lr_scale))


def _head_scales(model: Any, scale: float) -> dict[int, float]:
    """``lr_scales`` that put the head at ``scale`` times the learning rate (none for 1)."""
    if not scale > 0:
        raise TransferlabError(f"head_lr_scale must be > 0, got {scale}")
    return {} if scale == 1 else {id(p): float(scale) for p in _head_params(model)}


def _l2sp(model: Any, alpha: float, beta: float) -> Any:
    head_ids = {id(p) for p in _head_params(model)}
    anchors = [(p, p.detach().clone()) for p in model.parameters() if id(p) not in head_ids]
    head = [p for p in model.parameters() if id(p) in head_ids]

    def term(m: Any, x: Any, logits: Any) -> Any:
        pen = sum(((p - p0) ** 2).sum() for p, p0 in anchors) * (alpha / 2)
        return pen + sum((p**2).sum() for p in head) * (beta / 2)

    return term


def _bss(model: Any, eta: float, k: int) -> Any:
    import torch

    captured: dict[str, Any] = {}
    model.get_classifier().register_forward_pre_hook(lambda mod, inp: captured.__setitem__("f", inp[0]))

    def term(m: Any, x: Any, logits: Any) -> Any:
        f = captured["f"].float()
        s = torch.linalg.svdvals(f)  # descending
        return eta * (s[-k:] ** 2).sum()

    return term


@METHODS.register("partial", summary="the last k blocks and the head train (k=2 by default)", default_lr=1e-3,
                  paper="Yosinski et al., How transferable are features in deep neural networks?, NeurIPS 2014")
def partial(model: Any, ctx: FitContext, blocks: int = 2, head_lr_scale: float = 1.0,
            head_init: HeadInit = "random") -> Prepared:
    """The last ``blocks`` blocks and the head train; the head at ``head_lr_scale`` times the learning rate, from
    the linear probe's fit with ``head_init="probe"`` (LP-FT)."""
    if blocks < 0:
        raise TransferlabError(f"partial: blocks must be >= 0, got {blocks}")
    _init_head_(model, ctx, head_init)
    groups = parameter_groups(model)
    head = _head_params(model)
    keep = [p for g in groups[len(groups) - 1 - blocks:] for p in g] if blocks else []
    return Prepared(model, _freeze_all_but(model, keep + head), lr_scales=_head_scales(model, head_lr_scale))


@METHODS.register("bitfit", summary="only bias terms (incl. normalisation shifts) and the head train", default_lr=1e-3,
                  paper="Ben Zaken et al., BitFit, ACL 2022")
def bitfit(model: Any, ctx: FitContext, head_lr_scale: float = 10.0, freeze_norm_stats: bool = True) -> Prepared:
    """Biases at the learning rate, the new head at ``head_lr_scale`` times it (a fresh head needs the larger steps
    the ``head`` method takes: 1e-2 against the biases' 1e-3 by default). ``freeze_norm_stats``: batch norms keep
    their pretrained running statistics, so the learned shifts act on the normalisation the model was trained with
    (on Fashion-MNIST / Lite0: 0.850 with it, 0.770 without)."""
    head = _head_params(model)
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return Prepared(model, _freeze_all_but(model, biases + head), lr_scales={id(p): head_lr_scale for p in head},
                    freeze_norm_stats=freeze_norm_stats)


@METHODS.register("head", summary="the new classification head trains on a frozen backbone (end to end)",
                  default_lr=1e-2, paper="linear evaluation protocol")
def head(model: Any, ctx: FitContext) -> Prepared:
    return Prepared(model, _freeze_all_but(model, _head_params(model)))


@METHODS.register("linear_probe", summary="logistic regression on cached pooled features becomes the head",
                  default_lr=None, on_features=True, paper="linear evaluation protocol (Kornblith et al. 2019)")
def linear_probe(model: Any, ctx: FitContext, max_iter: int = 1000) -> Prepared:
    """Logistic regression (C = 1) on the backbone's cached pooled features of the training split; its weights
    become the model's head. Nothing trains in the loop; the features are those ``rank`` extracts (same cache)."""
    head = _probe_head_(model, ctx, max_iter)
    for p in model.parameters():
        p.requires_grad_(False)
    return Prepared(model, [], metrics={"trainable_params": int(sum(p.numel() for p in head.parameters()))})


def _probe_head_(model: Any, ctx: FitContext, max_iter: int = 1000) -> Any:
    """Fit the logistic regression of :func:`linear_probe` and write it into ``model``'s head (in place); returns
    the head. The features are the pretrained network's pooled features (the head's input) in eval mode on the
    evaluation preprocessing (``zoo.eval_transform``), from the zoo's feature cache, so the weights are in the units
    the network feeds its head."""
    import torch

    from ..train import logistic_probe
    from ..zoo import FeatureCache, extract_features

    ds = ctx.dataset
    own = getattr(model, "probe_features", None)  # a pair model's own joint features (models.BiEncoder)
    feats = own(ctx.backbone, ds, FeatureCache()) if own is not None else extract_features(
        ctx.backbone, ds, image_size=ctx.image_size, cache=FeatureCache()).features
    head = model.get_classifier()
    if feats.shape[1] != head.in_features:
        raise TransferlabError(f"{ctx.backbone.ref}: its cached features have {feats.shape[1]} dimensions but the "
                               f"classifier head takes {head.in_features}")
    coef, bias = logistic_probe(feats.astype(np.float64), ds.labels, ds.num_classes, ctx.seed, max_iter)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(coef, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return head
