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
from ._adapters import Adapted, Bottleneck, ResidualAdapted, _set, _torch
from ._registry import METHODS, Prepared


class ScaledSources(_torch().nn.Module):
    """``inner(x) + sum_k omega_k * delta_k(z)`` over frozen source adapters. ``residual``: the wrapped module is a
    transformers output block ``f(h, r)`` and the adapters read and join its residual ``r`` (as ``ResidualAdapted``)."""

    def __init__(self, inner: Any, adapters: list[Any], insertion: str, uniform: bool, residual: bool = False) -> None:
        torch = _torch()
        super().__init__()
        self.inner, self.insertion, self.residual = inner, insertion, residual
        self.sources = torch.nn.ModuleList(adapters)
        for p in self.sources.parameters():
            p.requires_grad_(False)
        k = len(adapters)
        d_out = adapters[0].up.out_features
        self.omega = torch.nn.Parameter(torch.full((k,) if uniform else (k, d_out), 1.0 / k))

    def _delta(self, z: Any) -> Any:
        total = 0
        for k, ad in enumerate(self.sources):
            w = self.omega[k]
            if w.ndim == 1 and z.ndim == 4:
                w = w.view(1, -1, 1, 1)
            total = total + w * ad(z)
        return total

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if self.residual:
            r, rest = args[0], args[1:]
            return self.inner(x, r + self._delta(r), *rest, **kwargs)
        out = self.inner(x, *args, **kwargs)
        z = out if self.insertion == "sequential" else x
        if z.ndim == 4 and z.shape[-2:] != out.shape[-2:]:
            z = _torch().nn.functional.adaptive_avg_pool2d(z, out.shape[-2:])
        return out + self._delta(z)


def _source_adapters(sources: list[str | Path], arch: dict[str, Any]) -> tuple[list[dict[str, Any]], str, bool]:
    from ._api import architecture_key, load

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
        if architecture_key(cfg["architecture"]) != architecture_key(arch):
            raise TransferlabError(f"scalearn source {s} adapts a {cfg['architecture']['name']}, not a "
                                   f"{arch.get('name')}")
        net = load(d)
        adapted = {n: m for n, m in net.named_modules() if isinstance(m, (Adapted, ResidualAdapted))}
        residual = any(isinstance(m, ResidualAdapted) for m in adapted.values())
        ins = {m.insertion for m in adapted.values()}
        if names is not None and set(adapted) != names:
            raise TransferlabError(f"scalearn sources adapt different layers ({s} differs from {sources[0]}): use the "
                                   "same placement for every source")
        if insertion is not None and ins != {insertion}:
            raise TransferlabError("scalearn sources must share the adapter insertion (sequential or parallel)")
        names, insertion = set(adapted), next(iter(ins))
        per_source.append({n: m.adapter for n, m in adapted.items()})
    return per_source, insertion or "parallel", residual


@METHODS.register("scalearn", summary="learn per-layer scalings of >= 2 frozen source adapters (+ head)",
                  default_lr=1e-2, needs_image_size=True, rebuild=True,
                  paper="Frohmann et al., ScaLearn, ACL Findings 2024")
def scalearn(model: Any, image_size: int = 64, sources: list[str] | None = None, uniform: bool = False) -> Prepared:
    from ._api import architecture_of

    per_source, insertion, residual = _source_adapters(list(sources or []), architecture_of(model))
    for p in model.parameters():
        p.requires_grad_(False)
    omegas = []
    for name in sorted(per_source[0]):
        wrapped = ScaledSources(model.get_submodule(name), [copy.deepcopy(s[name]) for s in per_source], insertion,
                                uniform, residual)
        _set(model, name, wrapped)
        omegas.append(wrapped.omega)
    head = list(model.get_classifier().parameters())
    for p in head:
        p.requires_grad_(True)
    return Prepared(model, omegas + head)


def structure(model: Any) -> dict[str, Any]:
    """What :func:`rebuild_` needs besides the weights: the wrapped modules' insertion and residual mode."""
    mods = [m for m in model.modules() if isinstance(m, ScaledSources)]
    return {"insertion": mods[0].insertion, "residual": mods[0].residual} if mods else {}


def rebuild_(model: Any, state: dict[str, Any], structure: dict[str, Any]) -> Any:
    """Re-create a saved ScaLearn model's modules from its state dict alone (the source directories are not needed):
    every ``NAME.sources.K.{down,up}.weight`` gives a source adapter's shape."""
    import re

    found: dict[str, dict[int, tuple[int, int, int]]] = {}
    for key, t in state.items():
        m = re.match(r"^(.*)\.sources\.(\d+)\.down\.weight$", key)
        if m:
            r, d_in = t.shape
            d_out = state[f"{m.group(1)}.sources.{m.group(2)}.up.weight"].shape[0]
            found.setdefault(m.group(1), {})[int(m.group(2))] = (d_in, d_out, r)
    if not found:
        raise TransferlabError("the saved ScaLearn model holds no source adapters")
    for name, srcs in found.items():
        adapters = [Bottleneck(*srcs[k], scaling=1.0, learned=False) for k in sorted(srcs)]
        uniform = state[f"{name}.omega"].ndim == 1
        _set(model, name, ScaledSources(model.get_submodule(name), adapters, structure.get("insertion", "parallel"),
                                        uniform, bool(structure.get("residual"))))
    return model
