"""Unified-view adapters (He et al., ICLR 2022) as fit methods: the modules live in :mod:`transferlab.models` (a saved
model rebuilds them from its card); here they are injected and chosen to train, with the new head."""

from __future__ import annotations

from typing import Any

from ..models import AdapterConfig, adapters_structure, inject_adapters_, mam_config
from ._registry import METHODS, FitContext, Prepared


def _prepare(model: Any, config: AdapterConfig, image_size: int) -> Prepared:
    params = inject_adapters_(model, config, image_size)
    head = list(model.get_classifier().parameters())
    for p in head:
        p.requires_grad_(True)
    return Prepared(model, params + head, structure=adapters_structure(config, image_size))


@METHODS.register("adapter", summary="unified-view bottleneck adapters (sequential/parallel, attn/ffn/block)",
                  default_lr=1e-3, paper="He et al., Towards a Unified View of Parameter-Efficient Transfer Learning, "
                  "ICLR 2022; Houlsby et al., ICML 2019")
def adapter(model: Any, ctx: FitContext, **options: Any) -> Prepared:
    """Options: those of :class:`~transferlab.models.AdapterConfig` (r, insertion, placement, scaling,
    learned_scaling, prefix)."""
    from pydantic import ValidationError

    from ..errors import TransferlabError

    try:
        config = AdapterConfig(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TransferlabError(f"adapter: option {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return _prepare(model, config, ctx.image_size or 64)


@METHODS.register("mam", summary="MAM adapter: prefix tuning on attention + parallel FFN adapter (s = 4)",
                  default_lr=1e-3, paper="He et al., ICLR 2022 (Mix-And-Match adapter)")
def mam(model: Any, ctx: FitContext, r: int = 16, prefix: int = 16, scaling: float = 4.0) -> Prepared:
    return _prepare(model, mam_config(r, prefix, scaling), ctx.image_size or 64)
