"""A random-projection head (RanPAC, McDonnell et al., NeurIPS 2023): the network's classifier replaced by a fixed
random projection of the pooled features, a ReLU, and a linear layer over the projected features.

The whole model still maps inputs to logits; its card's ``structure`` is ``{"kind": "projection_head", "dim": M}``
and :func:`rebuild_` re-creates the head from the state dict's shapes before the weights (the projection included)
load."""

from __future__ import annotations

from typing import Any

import torch

from ._adapters import replace_module_
from ._build import head_module_name
from ._structures import STRUCTURES


class ProjectionHead(torch.nn.Module):
    """``fc(relu(project(x)))``; ``project`` (``dim`` x in_features, no bias) is fixed: never trained."""

    def __init__(self, in_features: int, dim: int, num_classes: int, project: torch.nn.Linear | None = None) -> None:
        super().__init__()
        self.project = project if project is not None else torch.nn.Linear(in_features, dim, bias=False)
        self.project.weight.requires_grad_(False)
        self.fc = torch.nn.Linear(dim, num_classes)

    @property
    def in_features(self) -> int:
        return int(self.project.in_features)

    @property
    def out_features(self) -> int:
        return int(self.fc.out_features)

    def structure(self) -> dict[str, Any]:
        """The card's ``structure`` of a network whose classifier is this head."""
        return {"kind": "projection_head", "dim": int(self.fc.in_features)}

    def projected(self, x: torch.Tensor) -> torch.Tensor:
        """The features the linear layer reads: ``relu(project(x))``."""
        return torch.relu(self.project(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.projected(x))


def rebuild_(net: Any, state: dict[str, Any], structure: dict[str, Any]) -> Any:
    """Re-create the projection head of a saved model from its state dict's shapes."""
    name = head_module_name(net)
    w = state[f"{name}.project.weight"]
    c = state[f"{name}.fc.weight"].shape[0]
    replace_module_(net, name, ProjectionHead(int(w.shape[1]), int(structure.get("dim") or w.shape[0]), int(c)))
    return net


STRUCTURES.register("projection_head", summary="classifier replaced by a fixed random projection, ReLU and a "
                    "linear layer (RanPAC)")(rebuild_)
