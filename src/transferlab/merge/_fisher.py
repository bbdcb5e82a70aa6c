"""Fisher merging (Matena & Raffel, NeurIPS 2022): ``theta = sum_t F_t theta_t / sum_t F_t`` per parameter, with
each task's diagonal Fisher, floored. ``fisher="empirical"`` (the default, as the issue asks): ``F_t = mean over
examples of (d log p(y|x) / d theta)^2`` at the true label ``y``; ``fisher="exact"`` (what the paper's TensorFlow
reference, mmatena/model_merging, computes): the expectation over the model's own prediction,
``sum_y p(y|x) (d log p(y|x) / d theta)^2``, one backward pass per class. Both are tested against the closed-form
gradients of softmax regression."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import TransferlabError
from ._arith import Method, thetas_of
from ._registry import MERGE_METHODS


def diagonal_fisher(net: Any, data: Any, keys: set[str], progress: Any = None, kind: str = "empirical") -> dict[str, Any]:
    """Diagonal Fisher of the parameters named in ``keys`` (float64): the mean squared per-example gradient of the
    log-likelihood of the true label (``empirical``) or its expectation under the model's prediction (``exact``).
    The model runs in eval mode (no dropout; batch norms use their running statistics)."""
    import torch

    from .._runtime import current_device

    dev = current_device()
    net.to(dev).eval()
    params = {n: p for n, p in net.named_parameters() if n in keys}
    for n, p in net.named_parameters():
        p.requires_grad_(n in params)
    acc = {n: torch.zeros(p.shape, dtype=torch.float64, device=dev) for n, p in params.items()}
    count = 0
    loader = torch.utils.data.DataLoader(data, batch_size=1, shuffle=False)
    for x, y in (progress(loader) if progress else loader):
        logits = net(x.to(dev))
        logp = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)[0]
        targets = [(int(y[0]), 1.0)] if kind == "empirical" else list(enumerate(logp.detach().exp().tolist()))
        for j, (c, weight) in enumerate(targets):
            net.zero_grad(set_to_none=True)
            logp[c].backward(retain_graph=j + 1 < len(targets))
            for n, p in params.items():
                if p.grad is not None:
                    acc[n] += weight * p.grad.detach().to(torch.float64) ** 2
        count += 1
    if count == 0:
        raise TransferlabError("fisher: the dataset has no examples")
    return {n: (a / count).cpu() for n, a in acc.items()}


@dataclass
class Fisher(Method):
    examples: int = 512
    floor: float = 1e-6
    normalize: bool = False
    seed: int = 0
    fisher: str = "empirical"
    needs_data = True
    _fishers: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.examples < 1:
            raise TransferlabError(f"fisher: examples must be >= 1, got {self.examples}")
        if self.floor < 0:
            raise TransferlabError(f"fisher: floor must be >= 0, got {self.floor}")
        if self.fisher not in ("empirical", "exact"):
            raise TransferlabError(f"fisher: fisher must be 'empirical' or 'exact', got {self.fisher!r}")

    def options(self) -> dict[str, Any]:
        return {"examples": self.examples, "floor": self.floor, "normalize": self.normalize, "seed": self.seed,
                "fisher": self.fisher}

    def prepare(self, job: Any) -> None:
        import torch

        keys = set(job.float_keys)
        self._fishers = []
        for i in range(len(job.tasks)):
            net = job.task_model(i)
            data = job.task_data(i, net, self.examples, self.seed)
            f = diagonal_fisher(net, data, keys, kind=self.fisher)
            if self.normalize:  # each task's Fisher to unit total L2 norm: no task dominates by scale alone
                total = torch.sqrt(sum((v ** 2).sum() for v in f.values()))
                f = {k: v / total.clamp(min=1e-30) for k, v in f.items()}
            self._fishers.append(f)
            del net

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        thetas = thetas_of(base, deltas)
        if key not in self._fishers[0]:  # buffers (batch-norm statistics): plain average
            return torch.stack(thetas).mean(0)
        num = torch.zeros_like(thetas[0])
        den = torch.zeros_like(thetas[0])
        for th, f in zip(thetas, self._fishers, strict=True):
            w = f[key].to(th.dtype) + self.floor
            num += w * th
            den += w
        return num / den


@MERGE_METHODS.register("fisher", summary="per-parameter average weighted by each task's diagonal Fisher", needs_data=True,
                        paper="Matena & Raffel, Merging Models with Fisher-Weighted Averaging, NeurIPS 2022")
def fisher(examples: int = 512, floor: float = 1e-6, normalize: bool = False, seed: int = 0,
           fisher: str = "empirical") -> Fisher:
    return Fisher(int(examples), float(floor), bool(normalize), int(seed), fisher)
