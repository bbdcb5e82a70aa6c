"""BlackVIP's coordinator (Oh et al., CVPR 2023): an input-dependent visual prompt added to the image in front of a
network; the ``blackvip`` model structure (a saved ``fit --method blackvip`` rebuilds it from its card).

The coordinator is a frozen encoder (a pretrained image network's pooled features) followed by a decoder: the
features and a learnable *trigger* vector are laid out as a ``c x 4 x 4`` map (the reference lays 768 features and an
800-value trigger out as ``32 x 7 x 7``), two transposed convolutions (GELU between) upsample it to 16 x 16, a
bilinear resize brings it to the input size and ``eps * tanh`` bounds it. The prompted image is clipped to the range
of valid normalised pixels, as the reference's ``clip_clipping`` does. Only the trigger and the decoder are trained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._structures import STRUCTURES

MAP = 4  #: side of the decoder's first map
MIN_TRIGGER = 32  #: at least this many trigger values


def trigger_size(feature_dim: int) -> tuple[int, int]:
    """(channels of the decoder's first map, length of the trigger) for encoder features of ``feature_dim``."""
    channels = -(-(feature_dim + MIN_TRIGGER) // (MAP * MAP))
    return channels, channels * MAP * MAP - feature_dim


class Coordinator(nn.Module):
    """``prompt(x) = eps * tanh(decoder([encoder(x), trigger]))`` resized to ``x``; ``forward(x)`` returns the prompted
    image ``clip(x + prompt(x), lo, hi)`` (per-channel bounds of valid normalised pixels)."""

    def __init__(self, encoder: nn.Module, feature_dim: int, lo: tuple[float, ...], hi: tuple[float, ...],
                 eps: float = 1.0, hidden: int = 8) -> None:
        super().__init__()
        self.encoder = encoder
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        channels, t = trigger_size(feature_dim)
        self.channels, self.eps = channels, float(eps)
        self.trigger = nn.Parameter(torch.empty(1, t).uniform_(0.0, 0.1))  # the reference's initialisation
        self.decoder = nn.Sequential(nn.ConvTranspose2d(channels, hidden, 4, stride=2, padding=1), nn.GELU(),
                                     nn.ConvTranspose2d(hidden, 3, 4, stride=2, padding=1))
        with torch.no_grad():  # the prompt starts at zero: training starts from the network as it is
            self.decoder[-1].weight.zero_()
            self.decoder[-1].bias.zero_()
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("hi", torch.tensor(hi, dtype=torch.float32).view(1, -1, 1, 1))

    def trained(self) -> list[nn.Parameter]:
        """The parameters BlackVIP trains (the trigger and the decoder), in a fixed order."""
        return [self.trigger, *self.decoder.parameters()]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's pooled features of the clean images (no gradient)."""
        self.encoder.eval()
        with torch.no_grad():
            return self.encoder(x).flatten(1).float()

    def prompt(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z = self.features(x) if z is None else z
        m = torch.cat([z, self.trigger.expand(len(z), -1)], 1).view(len(z), self.channels, MAP, MAP)
        p = self.decoder(m)
        p = nn.functional.interpolate(p, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.eps * torch.tanh(p)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return torch.maximum(torch.minimum(x + self.prompt(x, z), self.hi), self.lo)


def _prompt_hook(net: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (net.blackvip(args[0]), *args[1:])


def install_prompter_(net: nn.Module, coordinator: Coordinator) -> nn.Module:
    """``net`` (in place) with ``coordinator`` as its ``blackvip`` submodule, prompting every input before the
    network sees it (a forward pre-hook); returns ``net``."""
    net.add_module("blackvip", coordinator)
    net.register_forward_pre_hook(_prompt_hook)
    return net


def prompter_structure(coordinator: Coordinator, encoder_architecture: dict[str, Any],
                       feature_dim: int) -> dict[str, Any]:
    """The card's ``structure`` of a prompted network."""
    return {"kind": "blackvip", "encoder": encoder_architecture, "feature_dim": int(feature_dim),
            "lo": coordinator.lo.flatten().tolist(), "hi": coordinator.hi.flatten().tolist(), "eps": coordinator.eps,
            "hidden": int(coordinator.decoder[0].out_channels)}


@STRUCTURES.register("blackvip")
def _rebuild(net: nn.Module, state: dict[str, Any], structure: dict[str, Any]) -> nn.Module:
    from ._build import net_from_architecture

    encoder = net_from_architecture(structure["encoder"], 0)
    coordinator = Coordinator(encoder, int(structure["feature_dim"]), tuple(structure["lo"]), tuple(structure["hi"]),
                              float(structure.get("eps", 1.0)), int(structure.get("hidden", 8)))
    return install_prompter_(net, coordinator)
