"""Batch-norm statistics recomputed on data: after a merge (the merged weights change the features the fine-tuned
models' statistics were computed on) and per task for supermasks (each mask makes another network)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def norm_layers(net: Any) -> dict[str, Any]:
    """The batch-norm layers of ``net`` by name."""
    import torch

    return {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}


def reestimate_norms_(net: Any, inputs: Iterable[Any], norms: Sequence[Any] | None = None,
                      device: Any = None) -> int:
    """Recompute the running statistics of ``norms`` (default: every batch-norm layer of ``net``) in place, as a
    cumulative average over every batch of ``inputs`` (input tensors); the number of batches used.

    This is what ``torch.optim.swa_utils.update_bn`` does, with two differences that matter here: update_bn puts
    the whole network in training mode (dropout and stochastic depth would then change the features the statistics
    are computed on), and it takes every norm layer (supermasks recompute only the layers their task owns). Here the
    rest of the network stays in eval mode, and a batch of one example is skipped (it has no variance). The layers'
    momenta and the network's modes are restored after."""
    import torch

    layers = list(norms) if norms is not None else list(norm_layers(net).values())
    modes = {m: m.training for m in net.modules()}
    momenta = [m.momentum for m in layers]
    net.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts alike
        m.train()
    used = 0
    try:
        with torch.no_grad():
            for x in inputs:
                if len(x) > 1:
                    net(x if device is None else x.to(device))
                    used += 1
    finally:
        for m, mo in zip(layers, momenta, strict=True):
            m.momentum = mo
        for m, training in modes.items():
            m.train(training)
    return used
