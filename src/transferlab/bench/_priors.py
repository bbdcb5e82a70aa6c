"""The trivial priors a ranking must beat, as first-class rows of ``bench rank``: what a practitioner would pick
without any transferability metric.

- ``parameter_count``: the model's parameters (its metadata or zoo entry, else counted on the loaded network: a
  model whose network a warm cache never loaded states none);
- ``source_accuracy``: its accuracy on its own source task (tasks of different difficulty: a weak prior);
- ``imagenet_accuracy``: its ImageNet-1k top-1, where the zoo entry (``imagenet_accuracy``), the model's metadata
  (a source accuracy measured on ImageNet) or timm's pretrained cfg gives one; each model's value says where it
  comes from, and a model without one says why (timm's pretrained cfgs carry no accuracy and timm ships no results
  table, so a timm model needs the zoo entry's);
- ``size_prior``: the forward FLOPs of one image at the bench's input size (torch's FlopCounterMode, which scales
  with parameters x input size; at the bench's ``image_size``, else the model's native size), counted once per
  (model, size) and cached.

A prior ranks the models it has no value for last (tied), so every prior is measured on the whole pool, like the
metrics (arXiv 2510.06448: model size alone scores τ 0.91 where LogME scores 0.57; arXiv 2405.20420: few scorers
beat the ImageNet accuracy).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np

from .._io import write_json_atomic

log = logging.getLogger(__name__)

PRIORS = ("parameter_count", "source_accuracy", "imagenet_accuracy", "size_prior")


def _is_imagenet(source: Any) -> bool:
    """ImageNet-1k by one of its names (ImageNet-21k and other variants are not)."""
    return isinstance(source, str) and source.lower().replace(" ", "") in ("imagenet-1k", "imagenet1k", "in1k",
                                                                            "imagenet", "ilsvrc2012", "ilsvrc-2012")


def imagenet_accuracy(ref: str, meta: dict[str, Any]) -> tuple[float | None, str]:
    """(ImageNet-1k top-1 in %, where it comes from), or (None, why there is none)."""
    if meta.get("imagenet_accuracy") is not None:
        return float(meta["imagenet_accuracy"]), "the zoo entry's imagenet_accuracy"
    if _is_imagenet(meta.get("source_dataset")) and meta.get("source_accuracy") is not None:
        return (float(meta["source_accuracy"]),
                f"the model's metadata: its source accuracy, measured on {meta['source_dataset']}")
    if ref.startswith("timm:"):
        return _timm_accuracy(ref)
    return None, ("none: no imagenet_accuracy in the zoo entry, and the model's metadata gives no accuracy measured "
                  "on ImageNet-1k")


#: pretrained-cfg fields that would hold an ImageNet top-1 (none of timm 1.0's cfgs has one)
_TIMM_FIELDS = ("top1", "imagenet_top1", "acc1", "top1_accuracy")


def _timm_accuracy(ref: str) -> tuple[float | None, str]:
    import timm

    name = ref.removeprefix("timm:").partition("@")[0]
    try:
        cfg = timm.get_pretrained_cfg(name)
        d = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else {}
    except Exception:  # an unknown tag: no cfg to read
        d = {}
    for k in _TIMM_FIELDS:
        if d.get(k) is not None:
            return float(d[k]), f"timm {timm.__version__}'s pretrained cfg of {name} ({k})"
    return None, (f"none: timm {timm.__version__}'s pretrained cfg of {name} carries no accuracy and timm ships no "
                  "results table; give it as imagenet_accuracy in the zoo entry")


def network_size(ref: str, image_size: int | None, trust_pickle: bool = False,
                 count_params: bool = True) -> dict[str, Any]:
    """The loaded network's size: ``flops`` of one forward pass of one image at ``image_size`` (image networks; else
    None), ``params`` counted on its parameters (None without a torch network), ``how`` the FLOPs were counted or
    why not. Cached per (model, size) under the cache's ``priors/``. ``count_params`` False: a network that is not an
    image network is not loaded (nothing to count)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..zoo import TorchImageBackbone, default_cache_dir, resolve_model

    backbone = resolve_model(ref, trust_pickle=trust_pickle)
    image = isinstance(backbone, TorchImageBackbone)
    why = f"none: not a torch image network ({type(backbone).__name__}; FLOPs are counted for those only)"
    if not image and not count_params:
        return {"flops": None, "params": None, "how": why}
    size = int(image_size or backbone.native_size) if image else None
    key = hashlib.sha256(json.dumps({"model": backbone.identity(), "size": size, "v": 2}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:24]
    path = default_cache_dir() / "priors" / f"size-{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())["size"]
        except (ValueError, KeyError):
            path.unlink(missing_ok=True)
    net = getattr(backbone, "model", None) if hasattr(type(backbone), "model") else None
    params = int(sum(p.numel() for p in net.parameters())) if isinstance(net, torch.nn.Module) else None
    out: dict[str, Any] = {"flops": None, "params": params, "how": why}
    if image:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            backbone.encode(torch.zeros(1, 3, size, size))
        out.update(flops=float(counter.get_total_flops()), how=f"FlopCounterMode on one {size}x{size} image")
    write_json_atomic(path, {"size": out, "model": backbone.identity(), "image_size": size})
    return out


def prior_values(models: list[dict[str, Any]], image_size: int | None,
                 trust_pickle: bool = False) -> dict[str, dict[str, Any]]:
    """Every prior's value per model (``values``: ref -> value or None) and where each comes from (``sources``)."""
    out: dict[str, dict[str, Any]] = {p: {"values": {}, "sources": {}} for p in PRIORS}
    for m in models:
        ref, meta = m["ref"], m.get("metadata") or {}
        try:
            size = network_size(ref, image_size, trust_pickle, count_params=meta.get("params") is None)
        except Exception as exc:  # a prior is evidence, not a reason to lose the bench
            log.warning("size_prior: could not load %s to count its size (%s)", ref, str(exc).splitlines()[0])
            size = {"flops": None, "params": None, "how": f"none: loading failed ({exc.__class__.__name__})"}
        params = meta.get("params")
        out["parameter_count"]["values"][ref] = float(params) if params is not None else (
            None if size["params"] is None else float(size["params"]))
        out["parameter_count"]["sources"][ref] = (
            "the model's stated parameters" if params is not None else "counted on the loaded network"
            if size["params"] is not None else "none: no parameters stated and no torch network to count")
        acc = meta.get("source_accuracy")
        out["source_accuracy"]["values"][ref] = None if acc is None else float(acc)
        out["source_accuracy"]["sources"][ref] = ("the model's source accuracy" if acc is not None
                                                  else "none: no source accuracy stated")
        out["imagenet_accuracy"]["values"][ref], out["imagenet_accuracy"]["sources"][ref] = \
            imagenet_accuracy(ref, meta)
        out["size_prior"]["values"][ref], out["size_prior"]["sources"][ref] = size["flops"], size["how"]
    return out


def filled(values: dict[str, float | None]) -> dict[str, float] | None:
    """A prior's values with the models it has none for ranked last (tied, below its lowest value); None when no
    model has a value."""
    known = [v for v in values.values() if v is not None and np.isfinite(v)]
    if not known:
        return None
    floor = min(known) - 1.0
    return {m: (v if v is not None and np.isfinite(v) else floor) for m, v in values.items()}
