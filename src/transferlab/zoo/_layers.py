"""Layer aggregation for ranking (``rank --layers last|mean|best``): a model's features from every layer, not only
its output.

After transformer-ranker's ``layer_aggregator`` (flairNLP/transformer-ranker, read at commit 43b42c1, 2025-07-26:
``lastlayer``, ``layermean``, ``bestlayer``; papers: arXiv 2409.05997 and ACL Findings 2024,
aclanthology.org/2024.findings-acl.757, which proposes the layer mean). Our own implementation; what each backbone calls a layer:

- text (transformers, sentence-transformers): every hidden layer after the embeddings (``output_hidden_states``), each
  pooled exactly as the output is (the mean over non-padding tokens; a sentence-transformer's own pooling and
  normalisation modules); the last layer is the model's output;
- images (timm): every stage ``forward_intermediates`` returns (where a model lacks it, the outputs of the modules its
  ``feature_info`` names, caught with forward hooks), each globally average-pooled, then the model's own pooled
  features (what ``last`` ranks: the head's input) as the last layer (for a ResNet the last stage's pooled output is
  that same vector);
- a backbone with no inner layers to read (ONNX, the raw-input baselines): its output, one layer.

``mean``: the mean of the pooled layers of the output's width (transformer-ranker averages layers that all share one
width; a CNN's stages differ in width and do not share a basis, so they are left out rather than padded or
projected: a CNN whose stages are all narrower than its output gets its output alone). For a mean-pooled text model
the mean of the pooled layers equals pooling the mean of the layers, as transformer-ranker computes it.
``best``: every layer scored with each metric, the best score kept (rank records which layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import TransferlabError

#: the layer modes of ``rank(..., layers=)``
LAYER_MODES = ("last", "mean", "best")


def check_layers(mode: str) -> str:
    """``mode`` if it is a layer mode, else a :class:`TransferlabError` naming them."""
    if mode not in LAYER_MODES:
        raise TransferlabError(f"unknown layer mode {mode!r}: give one of {', '.join(LAYER_MODES)} (last: the "
                               "model's output, as before; mean: the mean of its layers' pooled features; best: "
                               "each metric's best layer)")
    return mode


def split_layers(features: np.ndarray, dims: Sequence[int]) -> list[np.ndarray]:
    """Per-layer matrices (views) of features stored side by side, ``dims`` their widths in order."""
    if sum(dims) != features.shape[1]:
        raise ValueError(f"layer widths {list(dims)} do not add up to the {features.shape[1]} feature columns")
    edges = np.cumsum([0, *dims])
    return [features[:, a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]


def averaged_layers(dims: Sequence[int]) -> list[int]:
    """The layers ``mean`` averages: those of the last layer's (the output's) width."""
    return [i for i, d in enumerate(dims) if d == dims[-1]]


def mean_of_layers(features: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """The mean (float64 sums, float32 result) of the layers of the output's width, from features side by side."""
    layers = split_layers(features, dims)
    return np.mean([layers[i].astype(np.float64) for i in averaged_layers(dims)], axis=0).astype(np.float32)


def pooled(t: Any, prefix_tokens: int = 0) -> Any:
    """A layer's output pooled to [B, C]: feature maps [B, C, H, W] averaged over space, tokens [B, T, C] over
    the tokens after the first ``prefix_tokens`` (a ViT's class token: as ``forward_intermediates`` leaves it out);
    [B, C] as it is."""
    if t.ndim == 4:
        return t.mean(dim=(2, 3))
    if t.ndim == 3:
        return t[:, prefix_tokens:].mean(dim=1)
    return t.flatten(1)


def image_layers(model: Any, x: Any, encode: Callable[[Any], tuple[Any, Any]], has_head: bool,
                 timm_encode: bool) -> tuple[Any, Any, tuple[int, ...]]:
    """(every layer's pooled features side by side, logits, widths) of an image batch. ``timm_encode``: ``encode``
    is the timm one (pre-logits of ``forward_head``, logits where ``has_head``), so one ``forward_intermediates``
    pass gives the stages and the output; else the stages come from forward hooks on the modules ``feature_info``
    names, during ``encode``."""
    import torch

    if timm_encode and callable(getattr(model, "forward_intermediates", None)):
        try:
            final, stages = model.forward_intermediates(x)
        except (NotImplementedError, TypeError, AttributeError):
            pass  # an older timm model without it, or another signature: the hooks below
        else:
            feats = model.forward_head(final, pre_logits=True)
            logits = model.get_classifier()(feats) if has_head else None
            return _side_by_side([*(pooled(t) for t in stages), feats], logits, torch)
    caught: list[Any] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: caught.append(out)) for m in _stage_modules(model)]
    try:
        feats, logits = encode(x)
    finally:
        for h in handles:
            h.remove()
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    return _side_by_side([*(pooled(o, prefix) for o in caught if hasattr(o, "ndim")), feats], logits, torch)


def _stage_modules(model: Any) -> list[Any]:
    """The modules whose outputs are a model's stages: those timm's ``feature_info`` names; none if it has none."""
    info = getattr(model, "feature_info", None)
    names = [f.get("module") for f in info] if isinstance(info, list) else \
        [f.get("module") for f in getattr(info, "info", [])]
    found = dict(model.named_modules())
    return [found[n] for n in names if n in found]


def _side_by_side(layers: list[Any], logits: Any, torch: Any) -> tuple[Any, Any, tuple[int, ...]]:
    flat = [t.float().flatten(1) for t in layers]
    return torch.cat(flat, dim=1), logits, tuple(int(t.shape[1]) for t in flat)


def masked_mean(hidden: Any, mask: Any) -> Any:
    """Token states [B, T, C] averaged over the non-padding tokens (``mask`` [B, T]), in float32."""
    m = mask.unsqueeze(-1).float()
    return (hidden.float() * m).sum(1) / m.sum(1).clamp_min(1e-9)


def sentence_transformer_layers(model: Any, texts: list[str], device: Any) -> list[Any]:
    """Every hidden layer after the embeddings of a sentence-transformers model, each through the modules after its
    transformer (its pooling, normalisation...), as ``encode`` treats the last: a list of [B, C] tensors."""
    import torch

    prepare = getattr(model, "preprocess", None) or model.tokenize
    features = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in prepare(texts).items()}
    transformer = model[0]
    config = (getattr(transformer, "auto_model", None) or transformer.model).config
    before = config.output_hidden_states
    config.output_hidden_states = True
    try:
        out = transformer(features)
    finally:
        config.output_hidden_states = before
    layers = []
    for hidden in out["all_layer_embeddings"][1:]:
        f = {**out, "token_embeddings": hidden}
        for module in list(model)[1:]:
            f = module(f)
        layers.append(f["sentence_embedding"])
    return layers
