"""The modules domain adaptation adds to a network: the domain discriminator (and CDAN's randomised projection, in
``_losses``)."""

from __future__ import annotations

import torch


class Discriminator(torch.nn.Sequential):
    """Linear(in, h)-BN-ReLU-Linear(h, h)-BN-ReLU-Linear(h, 1): the domain discriminator of DANN and CDAN (h = 1024
    in the references), giving a logit (source = 1)."""

    def __init__(self, in_features: int, hidden: int = 1024) -> None:
        super().__init__(torch.nn.Linear(in_features, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
                         torch.nn.Linear(hidden, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
                         torch.nn.Linear(hidden, 1))


class CdanDiscriminator(torch.nn.Module):
    """A discriminator on CDAN's conditioning map: the multilinear map of (features, predictions), or, when that
    would exceed ``max_map`` entries, its randomised projection to ``randomized_dim`` (fixed Gaussian matrices,
    kept as buffers so a checkpoint resumes with the same projection)."""

    def __init__(self, features: int, classes: int, hidden: int = 1024, max_map: int = 4096,
                 randomized_dim: int = 1024, seed: int = 0) -> None:
        from ._losses import RandomizedMultilinear

        super().__init__()
        self.randomized = features * classes > max_map
        if self.randomized:
            gen = torch.Generator().manual_seed(seed)
            self.projector: torch.nn.Module | None = RandomizedMultilinear(features, classes, randomized_dim, gen)
            self.net = Discriminator(randomized_dim, hidden)
        else:
            self.projector = None
            self.net = Discriminator(features * classes, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)
