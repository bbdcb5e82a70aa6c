"""A bottleneck head: the network's classifier replaced by Linear(D, dim) - BatchNorm - ReLU - Linear(dim, C), as
domain adaptation uses (the discriminator and the class-confusion losses read the bottleneck features).

The whole model still maps images to logits (``predict``, ``evaluate`` and the report work unchanged); its card's
``structure`` is ``{"kind": "bottleneck_head", "dim": ...}`` and :func:`rebuild_` re-creates the head from the state
dict's shapes before the weights load.
"""

from __future__ import annotations

from typing import Any

import torch

from ._adapters import replace_module_
from ._build import head_module_name
from ._structures import STRUCTURES


class BottleneckHead(torch.nn.Module):
    """``fc(bottleneck(x))``; the bottleneck output of the last forward pass is kept in ``last_features`` (with
    its gradient) for losses that read it."""

    def __init__(self, in_features: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bottleneck = torch.nn.Sequential(torch.nn.Linear(in_features, dim), torch.nn.BatchNorm1d(dim),
                                              torch.nn.ReLU())
        self.fc = torch.nn.Linear(dim, num_classes)
        self.last_features: torch.Tensor | None = None

    @property
    def in_features(self) -> int:
        return int(self.bottleneck[0].in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x.flatten(1))
        self.last_features = z
        return self.fc(z)


def pooled_dim(net: Any) -> int:
    """Width of the pooled features the classifier receives: its ``in_features``, else timm's ``head_hidden_size``
    or ``num_features`` (they differ where a pre-logits layer sits between, as on MobileNetV3)."""
    n = (getattr(net.get_classifier(), "in_features", None) or getattr(net, "head_hidden_size", None)
         or getattr(net, "num_features", None))
    if not n:
        raise ValueError(f"cannot tell the feature width of {type(net).__name__}")
    return int(n)


def install_bottleneck_(net: Any, dim: int, num_classes: int) -> BottleneckHead:
    """Replace ``net``'s classifier by a fresh :class:`BottleneckHead` (in place); returns it."""
    head = BottleneckHead(pooled_dim(net), dim, num_classes)
    replace_module_(net, head_module_name(net), head)
    return head


def bottleneck_structure(net: Any) -> dict[str, Any]:
    """The card's ``structure`` of a network with a :class:`BottleneckHead`."""
    head = net.get_classifier()
    return {"kind": "bottleneck_head", "dim": int(head.fc.in_features)}


def rebuild_(net: Any, state: dict[str, Any], structure: dict[str, Any]) -> Any:
    """Re-create the bottleneck head of a saved model from its state dict's shapes."""
    name = head_module_name(net)
    w = state[f"{name}.bottleneck.0.weight"]
    c = state[f"{name}.fc.weight"].shape[0]
    replace_module_(net, name, BottleneckHead(int(w.shape[1]), int(structure.get("dim") or w.shape[0]), int(c)))
    return net


STRUCTURES.register("bottleneck_head", summary="classifier replaced by Linear-BN-ReLU-Linear (domain adaptation)")(
    rebuild_)
