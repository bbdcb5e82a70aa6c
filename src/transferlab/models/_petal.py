"""PETALface's quality-mixed LoRA (Narayan et al., "PETAL|face: Parameter Efficient Transfer Learning for
Low-resolution Face Recognition", WACV 2025) and the ``petal`` model structure.

Two peft LoRA sets, ``hq`` and ``lq``, sit on the same layers of one backbone; every adapted layer computes
``W x + q(x) * B_hq A_hq x + (1 - q(x)) * B_lq A_lq x`` with ``q(x)`` in [0, 1] the example's image quality. The paper
takes ``q`` from a face-quality network; we use a generic proxy, the *effective resolution*: the energy of the
image's Laplacian (its high frequencies) relative to the image's variance, on a log scale,

    s(x) = log(mean(lap(g)^2) / var(g)),   g = the channel mean of x,

which drops when an image was down-sampled and blown up again (or blurred), and map it linearly to [0, 1] between
two calibration points ``lo`` and ``hi`` (the 5th and 95th percentiles of ``s`` over the training images), clipped.
The mix is applied by forward hooks on each LoRA set's B projection, reading the weights a forward pre-hook on the
network computed from its input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._structures import STRUCTURES

ADAPTERS = ("hq", "lq")
_LAPLACE = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def quality_proxy(x: torch.Tensor) -> torch.Tensor:
    """``s(x)`` of each image of ``x`` ``[B, C, H, W]``: log of the Laplacian's energy over the image's variance."""
    g = x.float().mean(1, keepdim=True)
    k = torch.tensor(_LAPLACE, dtype=g.dtype, device=g.device).view(1, 1, 3, 3)
    lap = nn.functional.conv2d(nn.functional.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    energy = lap.pow(2).flatten(1).mean(1)
    var = g.flatten(1).var(1)
    return torch.log((energy + 1e-8) / (var + 1e-8))


class QualityMixer(nn.Module):
    """Maps the proxy to the ``hq`` weight ``q`` in [0, 1] (``lq`` gets ``1 - q``) and holds the current batch's
    weights for the adapters' hooks."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.register_buffer("lo", torch.tensor(float(lo)))
        self.register_buffer("hi", torch.tensor(float(hi)))
        self.current: dict[str, torch.Tensor] | None = None
        self.given: torch.Tensor | None = None  # a batch's quality given from outside (training on a column)

    def quality(self, x: torch.Tensor) -> torch.Tensor:
        s = quality_proxy(x)
        return ((s - self.lo) / (self.hi - self.lo).clamp_min(1e-6)).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> None:
        q = self.quality(x) if self.given is None else self.given.to(x.device, torch.float32)
        self.current = {"hq": q, "lq": 1.0 - q}


def _mix_hook(mixer: QualityMixer, name: str) -> Any:
    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        if mixer.current is None:
            return out
        w = mixer.current[name].to(out.dtype)
        return out * w.view(-1, *([1] * (out.dim() - 1)))

    return hook


def _mixer_pre_hook(net: nn.Module, args: tuple[Any, ...]) -> None:
    net.petal(args[0])


def inject_petal_(net: nn.Module, targets: list[str], r: int, alpha: int, lo: float, hi: float) -> list[Any]:
    """Two peft LoRA sets (``hq``, ``lq``) on ``targets`` of ``net`` (in place), both active and mixed per example
    by quality; returns the adapters' parameters."""
    import warnings

    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    with warnings.catch_warnings():  # peft warns that a second adapter joins the first: that is the point
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        for name in ADAPTERS:
            inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets)), net,
                                    adapter_name=name)
    mixer = QualityMixer(lo, hi)
    net.add_module("petal", mixer)
    params = []
    for mod in net.modules():
        if isinstance(mod, LoraLayer):
            mod.set_adapter(list(ADAPTERS))
            for name in ADAPTERS:
                mod.lora_B[name].register_forward_hook(_mix_hook(mixer, name))
                params += [*mod.lora_A[name].parameters(), *mod.lora_B[name].parameters()]
    net.register_forward_pre_hook(_mixer_pre_hook)
    return params


def petal_structure(targets: list[str], r: int, alpha: int, lo: float, hi: float) -> dict[str, Any]:
    return {"kind": "petal", "targets": list(targets), "r": int(r), "alpha": int(alpha), "lo": float(lo),
            "hi": float(hi)}


@STRUCTURES.register("petal")
def _rebuild(net: nn.Module, state: dict[str, Any], structure: dict[str, Any]) -> nn.Module:
    inject_petal_(net, structure["targets"], structure["r"], structure["alpha"], structure["lo"], structure["hi"])
    return net
