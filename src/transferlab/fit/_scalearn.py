"""ScaLearn: transfer from several source tasks by learning only how much of each frozen source adapter to use
(Frohmann et al., "ScaLearn: Simple and Highly Parameter-Efficient Task Transfer by Learning to Scale", ACL Findings
2024; reference: CPJKU/ScaLearn).

Every adapted layer computes ``h + sum_k omega_k * delta_k(z)``, with ``delta_k`` the frozen adapter of source task k
(trained by ``transferlab fit --method adapter`` on the same base model and placement) and ``omega_k`` learned: a
vector over the hidden dimension (ScaLearn) or one scalar (``uniform=True``, ScaLearnUniform). Only the omegas and the
new head train. We initialise omega at 1/K (an average of the sources); this choice is ours.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..errors import TransferlabError
from ._adapters import Adapted, _set, _torch
from ._registry import METHODS, Prepared


class ScaledSources(_torch().nn.Module):
    """``inner(x) + sum_k omega_k * delta_k(z)`` over frozen source adapters."""

    def __init__(self, inner: Any, adapters: list[Any], insertion: str, uniform: bool) -> None:
        torch = _torch()
        super().__init__()
        self.inner, self.insertion = inner, insertion
        self.sources = torch.nn.ModuleList(adapters)
        for p in self.sources.parameters():
            p.requires_grad_(False)
        k = len(adapters)
        d_out = adapters[0].up.out_features
        self.omega = torch.nn.Parameter(torch.full((k,) if uniform else (k, d_out), 1.0 / k))

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(x, *args, **kwargs)
        z = out if self.insertion == "sequential" else x
        if z.ndim == 4 and z.shape[-2:] != out.shape[-2:]:
            z = _torch().nn.functional.adaptive_avg_pool2d(z, out.shape[-2:])
        total = 0
        for k, ad in enumerate(self.sources):
            w = self.omega[k]
            if w.ndim == 1 and out.ndim == 4:
                w = w.view(1, -1, 1, 1)
            total = total + w * ad(z)
        return out + total


def _source_adapters(sources: list[str | Path], arch: str) -> tuple[list[dict[str, Any]], str]:
    from ._api import load

    if len(sources) < 2:
        raise TransferlabError(f"scalearn needs at least 2 source adapters (fits made with --method adapter); got "
                               f"{len(sources)}")
    per_source, insertion, names = [], None, None
    for s in sources:
        d = Path(s)
        try:
            cfg = json.loads((d / "config.json").read_text())
        except (OSError, ValueError):
            raise TransferlabError(f"scalearn source {s} is not a transferlab fit directory") from None
        if cfg.get("method") != "adapter":
            raise TransferlabError(f"scalearn source {s} was fitted with {cfg.get('method')!r}; sources must be "
                                   "'adapter' fits")
        if cfg["architecture"]["name"] != arch:
            raise TransferlabError(f"scalearn source {s} adapts a {cfg['architecture']['name']}, not a {arch}")
        net = load(d)
        adapted = {n: m for n, m in net.named_modules() if isinstance(m, Adapted)}
        ins = {m.insertion for m in adapted.values()}
        if names is not None and set(adapted) != names:
            raise TransferlabError(f"scalearn sources adapt different layers ({s} differs from {sources[0]}): use the "
                                   "same placement for every source")
        if insertion is not None and ins != {insertion}:
            raise TransferlabError("scalearn sources must share the adapter insertion (sequential or parallel)")
        names, insertion = set(adapted), next(iter(ins))
        per_source.append({n: m.adapter for n, m in adapted.items()})
    return per_source, insertion or "parallel"


@METHODS.register("scalearn", summary="learn per-layer scalings of >= 2 frozen source adapters (+ head)",
                  default_lr=1e-2, needs_image_size=True,
                  paper="Frohmann et al., ScaLearn, ACL Findings 2024")
def scalearn(model: Any, image_size: int = 64, sources: list[str] | None = None, uniform: bool = False) -> Prepared:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    per_source, insertion = _source_adapters(list(sources or []), cfg.get("architecture", ""))
    for p in model.parameters():
        p.requires_grad_(False)
    omegas = []
    for name in sorted(per_source[0]):
        wrapped = ScaledSources(model.get_submodule(name), [copy.deepcopy(s[name]) for s in per_source], insertion,
                                uniform)
        _set(model, name, wrapped)
        omegas.append(wrapped.omega)
    head = list(model.get_classifier().parameters())
    for p in head:
        p.requires_grad_(True)
    return Prepared(model, omegas + head)
