"""SLA's aggregated classifier (Lee, Hwang & Shin, ICML 2020; ``fit --label-augmentation``, ``transferlab.fit._sla``):
a joint ``C * m``-way network read as a C-way one by aggregating its joint logits over ``m`` quarter-turn rotations;
the ``sla`` model structure (a saved SLA fit rebuilds it from its card)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._structures import STRUCTURES


def sla_aggregate(joint_logits: Any, m: int = 4) -> Any:
    """Aggregated logits ``[B, C]`` from the joint logits of the ``m`` rotations, ``[m, B, C * m]`` (rotation ``k``
    of every image at ``[k]``): ``s_c = 1/m * sum_k z[k, :, c * m + k]``. numpy or torch in, the same out."""
    z = joint_logits
    per_rotation = [z[k][:, k::m] for k in range(m)]  # rotation k's logits of (c, k) for every class c
    total = per_rotation[0]
    for p in per_rotation[1:]:
        total = total + p
    return total / m


class Aggregated(nn.Module):
    """``net`` (a ``C * m``-way joint classifier) seen as a C-way one: each input in its ``m`` rotations, the joint
    logits aggregated (:func:`sla_aggregate`). ``get_classifier`` is the joint head."""

    def __init__(self, net: nn.Module, m: int = 4) -> None:
        super().__init__()
        self.net, self.m = net, int(m)

    def get_classifier(self) -> Any:
        return self.net.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(self.m)]))
        return sla_aggregate(z.view(self.m, len(x), -1), self.m)


def sla_structure(m: int, num_classes: int) -> dict[str, Any]:
    """The card's ``structure`` of an SLA model: ``m`` rotations over a ``num_classes * m``-way network."""
    return {"kind": "sla", "transforms": int(m), "joint_classes": int(num_classes) * int(m)}


@STRUCTURES.register("sla")
def _rebuild(net: Any, state: dict[str, Any], structure: dict[str, Any]) -> Aggregated:
    """The saved SLA model: the recorded network with its joint head, inside :class:`Aggregated`."""
    net.reset_classifier(int(structure["joint_classes"]))
    return Aggregated(net, int(structure["transforms"]))
