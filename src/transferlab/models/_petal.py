"""PETALface's quality-mixed LoRA (Narayan et al., "PETAL|face: Parameter Efficient Transfer Learning for
Low-resolution Face Recognition", WACV 2025) and the ``petal`` model structure.

Two peft LoRA sets, ``hq`` and ``lq``, sit on the same layers of one backbone; every adapted layer computes
``W x + q(x) * B_hq A_hq x + (1 - q(x)) * B_lq A_lq x`` with ``q(x)`` in [0, 1] the example's image quality. The paper
takes ``q`` from a face-quality network; we use a generic proxy, the *effective resolution*: the energy of the
image's Laplacian (its high frequencies) relative to the image's variance, on a log scale,

    s(x) = log(mean(lap(g)^2) / var(g)),   g = the channel mean of x,

which drops when an image was down-sampled and blown up again (or blurred), and map it linearly to [0, 1] between
two calibration points ``lo`` and ``hi`` (the 5th and 95th percentiles of ``s`` over the training images), clipped.
A quality column of the data (:mod:`transferlab.data._quality`: one value in [0, 1] per example) replaces the proxy
where the data has one. The ``hq`` set's weight is ``w = clip(0.5 + spread * (q - center), 0, 1)`` (``lq``'s
``1 - w``), the reference's ``alpha = 0.5 + (score - threshold)`` (Kartik-3004/PETALface @ 9de0c65, ``train_iqa.py``
``generate_alpha``) with a scale and a clip: ``spread`` 1 and ``center`` 0.5 give ``q`` itself (a set learns almost
only from the examples of its quality); a smaller ``spread`` mixes softly (both sets learn from every example);
``center`` is the quality that both sets weigh equally (``center`` 0 with ``spread`` 0.5: ``w = 0.5 + q / 2``, the
``hq`` set on every example, the ``lq`` set on low-quality ones only, at up to half).
The mix is applied by forward hooks on each LoRA set's B projection, reading the weights a forward pre-hook on the
network computed from its input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import TransferlabError
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


def quality_column(data: Any) -> np.ndarray | None:
    """The quality column (``meta["quality"]``) of the Dataset a torch dataset of the models (ImageTensors) reads, or
    None."""
    return getattr(getattr(data, "ds", None), "meta", {}).get("quality")


class QualityMixer(nn.Module):
    """Maps the proxy (or a given quality) ``q`` to the ``hq`` weight ``w = clip(0.5 + spread (q - center), 0, 1)``
    (``lq`` gets ``1 - w``) and holds the current batch's weights for the adapters' hooks."""

    def __init__(self, lo: float, hi: float, spread: float = 1.0, center: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("lo", torch.tensor(float(lo)))
        self.register_buffer("hi", torch.tensor(float(hi)))
        self.spread, self.center = float(spread), float(center)
        self.current: dict[str, torch.Tensor] | None = None
        #: the next batch's quality from a column (one value per example), used by one forward in place of the proxy
        self.given: torch.Tensor | None = None

    def quality(self, x: torch.Tensor) -> torch.Tensor:
        s = quality_proxy(x)
        return ((s - self.lo) / (self.hi - self.lo).clamp_min(1e-6)).clamp(0.0, 1.0)

    def read(self, data: Any, index: Any) -> None:
        """The inference loop's hook (``transferlab_examples``): the next batch holds examples ``index`` of ``data``;
        their quality column, where ``data`` has one, replaces the proxy for that batch."""
        q = quality_column(data)
        self.given = None if q is None else torch.as_tensor(np.asarray(q)[np.asarray(index)], dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> None:
        given, self.given = self.given, None
        if given is not None and len(given) != len(x):
            raise TransferlabError(f"petal: {len(given)} quality values for a batch of {len(x)} images")
        q = self.quality(x) if given is None else given.to(x.device, torch.float32)
        w = (0.5 + self.spread * (q - self.center)).clamp(0.0, 1.0)
        self.current = {"hq": w, "lq": 1.0 - w}


def _mix_hook(mixer: QualityMixer, name: str) -> Any:
    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        if mixer.current is None:
            return out
        w = mixer.current[name].to(out.dtype)
        return out * w.view(-1, *([1] * (out.dim() - 1)))

    return hook


def _mixer_pre_hook(net: nn.Module, args: tuple[Any, ...]) -> None:
    net.petal(args[0])


def inject_petal_(net: nn.Module, targets: list[str], r: int, alpha: int, lo: float, hi: float,
                  spread: float = 1.0, center: float = 0.5) -> list[Any]:
    """Two peft LoRA sets (``hq``, ``lq``) on ``targets`` of ``net`` (in place), both active and mixed per example
    by quality; returns the adapters' parameters. ``net.transferlab_examples(data, index)`` tells the mix which
    examples of ``data`` the next batch holds (the inference loop calls it: a quality column then replaces the
    proxy)."""
    import warnings

    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    with warnings.catch_warnings():  # peft warns that a second adapter joins the first: that is the point
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        for name in ADAPTERS:
            inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets)), net,
                                    adapter_name=name)
    mixer = QualityMixer(lo, hi, spread, center)
    net.add_module("petal", mixer)
    net.transferlab_examples = mixer.read
    params = []
    for mod in net.modules():
        if isinstance(mod, LoraLayer):
            mod.set_adapter(list(ADAPTERS))
            for name in ADAPTERS:
                mod.lora_B[name].register_forward_hook(_mix_hook(mixer, name))
                params += [*mod.lora_A[name].parameters(), *mod.lora_B[name].parameters()]
    net.register_forward_pre_hook(_mixer_pre_hook)
    return params


def petal_structure(targets: list[str], r: int, alpha: int, lo: float, hi: float, spread: float = 1.0,
                    center: float = 0.5) -> dict[str, Any]:
    return {"kind": "petal", "targets": list(targets), "r": int(r), "alpha": int(alpha), "lo": float(lo),
            "hi": float(hi), "spread": float(spread), "center": float(center)}


@STRUCTURES.register("petal")
def _rebuild(net: nn.Module, state: dict[str, Any], structure: dict[str, Any]) -> nn.Module:
    inject_petal_(net, structure["targets"], structure["r"], structure["alpha"], structure["lo"], structure["hi"],
                  structure.get("spread", 1.0), structure.get("center", 0.5))  # saved before these options: w = q
    return net
