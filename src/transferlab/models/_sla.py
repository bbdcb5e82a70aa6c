"""SLA's aggregated classifier (Lee, Hwang & Shin, ICML 2020; ``fit --label-augmentation``, ``transferlab.fit._sla``):
a joint ``C * m``-way network read as a C-way one by aggregating its joint logits over ``m`` quarter-turn rotations;
the ``sla`` model structure (a saved SLA fit rebuilds it from its card)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import TransferlabError
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
    logits aggregated (:func:`sla_aggregate`). ``get_classifier`` is the joint head.

    ``single``: SLA+SD's self-distilled C-way head (a linear layer on ``net``'s pooled features, timm's pre-logits)
    where the fit trained one; ``head`` says which prediction ``forward`` gives: ``"aggregate"`` (``m`` passes) or
    ``"single"`` (one pass through ``single``). Both stay available: set ``model.head`` to switch."""

    def __init__(self, net: nn.Module, m: int = 4, single: nn.Module | None = None, head: str = "aggregate") -> None:
        super().__init__()
        self.net, self.m, self.single = net, int(m), single
        self.head = head

    @property
    def head(self) -> str:
        return self._head

    @head.setter
    def head(self, value: str) -> None:
        if value not in ("aggregate", "single") or (value == "single" and self.single is None):
            have = "aggregate, single" if self.single is not None else "aggregate (this fit trained no single head)"
            raise TransferlabError(f"an SLA model predicts with the head 'aggregate' or 'single'; got {value!r}; "
                                   f"this one has: {have}")
        self._head = value

    def get_classifier(self) -> Any:
        return self.net.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._head == "single":
            return self.single(self.net.forward_head(self.net.forward_features(x), pre_logits=True))
        z = self.net(torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(self.m)]))
        return sla_aggregate(z.view(self.m, len(x), -1), self.m)


def sla_structure(m: int, num_classes: int, single_features: int | None = None,
                  head: str = "aggregate") -> dict[str, Any]:
    """The card's ``structure`` of an SLA model: ``m`` rotations over a ``num_classes * m``-way network; with
    ``single_features``, a self-distilled single head on that many pooled features, and ``head`` the prediction
    the model gives when loaded."""
    out: dict[str, Any] = {"kind": "sla", "transforms": int(m), "joint_classes": int(num_classes) * int(m)}
    if single_features is not None:
        out.update(single_features=int(single_features), head=head)
    return out


@STRUCTURES.register("sla")
def _rebuild(net: Any, state: dict[str, Any], structure: dict[str, Any]) -> Aggregated:
    """The saved SLA model: the recorded network with its joint head, inside :class:`Aggregated` (with its single
    head where the card records one; a card written before single heads were saved has none)."""
    m, joint = int(structure["transforms"]), int(structure["joint_classes"])
    net.reset_classifier(joint)
    if structure.get("single_features") is None:
        return Aggregated(net, m)
    single = nn.Linear(int(structure["single_features"]), joint // m)
    return Aggregated(net, m, single, str(structure.get("head", "single")))
