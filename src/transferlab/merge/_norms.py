"""Batch-norm running statistics of a merged network re-estimated on the tasks' data (``merge_models(...,
reset_norms=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TransferlabError


def reestimated_norms(model_dir: Path, job: Any, examples: int) -> dict[str, Any]:
    """Batch-norm running statistics of the merged network, recomputed on ``examples`` of each task's data (a
    cumulative average over every batch of every task; the merged weights change the features the statistics of the
    fine-tuned models were computed on)."""
    import torch

    from .._runtime import current_device
    from ..models import load
    from ..train import norm_layers, reestimate_norms_

    dev = current_device()
    net = load(model_dir).to(dev)
    norms = norm_layers(net)
    if not norms:
        raise TransferlabError("reset_norms: this model has no batch-norm layer")

    def batches() -> Any:  # every batch of every task's data
        for i in range(len(job.tasks)):
            for x, _ in torch.utils.data.DataLoader(job.task_data(i, net, examples, 0), batch_size=32):
                yield x

    reestimate_norms_(net, batches(), device=dev)
    state = net.state_dict()
    return {f"{n}.{s}": state[f"{n}.{s}"].cpu().to(job.base.info(f"{n}.{s}")[1]).contiguous() for n in norms
            for s in ("running_mean", "running_var", "num_batches_tracked") if f"{n}.{s}" in state}
