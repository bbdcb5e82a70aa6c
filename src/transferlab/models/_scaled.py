"""ScaLearn's modules (Frohmann et al., ACL Findings 2024): ``inner(x) + sum_k omega_k * delta_k(z)`` over frozen
source adapters, and their rebuild from a saved state dict alone (the source directories are not needed)."""

from __future__ import annotations

from typing import Any

from ..errors import TransferlabError
from ._adapters import Bottleneck, _torch, replace_module_
from ._structures import STRUCTURES


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


def scaled_structure(model: Any) -> dict[str, Any]:
    """The card's ``structure`` of a ScaLearn model: what :func:`rebuild_` needs besides the weights (the wrapped
    modules' insertion and residual mode)."""
    mods = [m for m in model.modules() if isinstance(m, ScaledSources)]
    return {"kind": "scaled_sources", "insertion": mods[0].insertion, "residual": mods[0].residual} if mods else {}


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
        replace_module_(model, name, ScaledSources(model.get_submodule(name), adapters, structure.get("insertion", "parallel"),
                                        uniform, bool(structure.get("residual"))))
    return model


STRUCTURES.register("scaled_sources", summary="ScaLearn: learned scalings of frozen source adapters")(rebuild_)
