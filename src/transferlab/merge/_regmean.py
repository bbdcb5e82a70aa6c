"""RegMean (Jin et al., ICLR 2023): for each linear map ``y = x W^T`` the merge minimising
``sum_t ||X_t W^T - X_t W_t^T||^2`` is ``W^T = (sum_t G_t)^-1 sum_t G_t W_t^T`` with ``G_t = X_t^T X_t`` the Gram
matrix of the layer's inputs on task t. Off-diagonal entries are scaled by ``alpha`` (the paper's regulariser;
``alpha=1`` is the exact solution). Linear layers and 1x1 convolutions (linear over channels) are merged this way;
every other tensor is averaged, as in the paper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import TransferlabError
from ._arith import Method, thetas_of
from ._registry import MERGE_METHODS


class _Seen(Exception):
    """Raised by a hook once every hooked module has run: the rest of the forward pass is not needed."""


def is_linear_map(mod: Any) -> bool:
    """A Linear, or a 1x1 Conv2d of stride 1 and one group (linear over channels): what RegMean merges."""
    import torch

    return isinstance(mod, torch.nn.Linear) or (isinstance(mod, torch.nn.Conv2d) and mod.groups == 1
                                                 and mod.kernel_size == (1, 1) and mod.stride == (1, 1))


def input_grams(net: Any, data: Any, keys: set[str], batch_size: int = 32, stop_early: bool = False) -> dict[str, Any]:
    """``weight key -> X^T X / rows`` (float64): the mean input Gram matrix of every Linear / 1x1 Conv2d whose weight
    is in ``keys`` (averaged per task as the reference implementation does, so a task with more rows, e.g. longer
    padded texts, does not outweigh the others). ``data``: a dataset, or a list of ``(x, y)`` batches.
    ``stop_early``: each forward pass ends once every such module has run once (RegMean++ hooks one layer)."""
    import torch

    grams: dict[str, Any] = {}
    rows: dict[str, int] = {}
    hooks = []
    seen: set[str] = set()

    def hook(name: str) -> Any:
        def f(mod: Any, inp: Any, _out: Any) -> None:
            x = inp[0].detach()
            x = x.movedim(1, -1) if isinstance(mod, torch.nn.Conv2d) else x
            x = x.reshape(-1, x.shape[-1])
            x = x if x.dtype == torch.float64 else x.float()  # float32 products per batch (faster), float64 sums
            g = (x.T @ x).to(torch.float64)
            grams[name] = grams[name] + g if name in grams else g
            rows[name] = rows.get(name, 0) + x.shape[0]
            seen.add(name)
            if stop_early and len(seen) == len(hooks):
                raise _Seen
        return f

    for name, mod in net.named_modules():
        key = f"{name}.weight" if name else "weight"
        if key in keys and is_linear_map(mod):
            hooks.append(mod.register_forward_hook(hook(key)))
    from .._runtime import current_device

    dev = current_device()
    net.to(dev).eval()
    batches = data if isinstance(data, list) else torch.utils.data.DataLoader(data, batch_size=batch_size,
                                                                               shuffle=False)
    try:
        with torch.inference_mode():
            for x, _ in batches:
                seen.clear()
                try:
                    net(x.to(dev))
                except _Seen:
                    pass
    finally:
        for h in hooks:
            h.remove()
    return {k: (g / max(rows[k], 1)).cpu() for k, g in grams.items()}


@dataclass
class RegMean(Method):
    examples: int = 256
    alpha: float = 0.9
    seed: int = 0
    needs_data = True
    _grams: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        check_gram_options("regmean", self.alpha, self.examples)

    def options(self) -> dict[str, Any]:
        return {"examples": self.examples, "alpha": self.alpha, "seed": self.seed}

    def prepare(self, job: Any) -> None:
        keys = set(job.float_keys)
        self._grams = []
        for i in range(len(job.tasks)):
            net = job.task_model(i)
            g = input_grams(net, job.task_data(i, net, self.examples, self.seed), keys)
            for k, v in g.items():
                g[k] = regularised(v, self.alpha)
            self._grams.append(g)
            del net

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        thetas = thetas_of(base, deltas)
        if key not in self._grams[0]:
            return torch.stack(thetas).mean(0)
        return regmean_solve(thetas, [g[key] for g in self._grams]).reshape(base.shape).to(thetas[0].dtype)


def check_gram_options(method: str, alpha: float, examples: int) -> None:
    """The options every Gram-matrix merge takes (regmean, regmean_pp): one clear error for each bad value."""
    if not 0 <= alpha <= 1:
        raise TransferlabError(f"{method}: alpha must lie in [0, 1], got {alpha}")
    if examples < 1:
        raise TransferlabError(f"{method}: examples must be >= 1, got {examples}")


def regularised(g: Any, alpha: float) -> Any:
    """A Gram matrix with its off-diagonal entries scaled by ``alpha`` (the reference's reduce_non_diagonal_ratio)."""
    import torch

    return alpha * g + (1 - alpha) * torch.diag(torch.diagonal(g))


def regmean_solve(thetas: list[Any], gs: list[Any]) -> Any:
    """``(sum_t G_t)^-1 sum_t G_t W_t^T``, transposed back: the weights ``[out, in...]`` (float64, flattened to
    ``[out, in]``) closest to every task's on its own inputs."""
    import torch

    total = sum(gs)
    flat = [th.reshape(th.shape[0], -1).to(torch.float64).T for th in thetas]  # W_t^T: [in, out]
    rhs = sum(g.to(torch.float64) @ w for g, w in zip(gs, flat, strict=True))
    # inputs that never vary leave G singular: a small ridge towards the plain average decides those directions
    ridge = 1e-8 * torch.diagonal(total).mean().clamp(min=1e-30)
    eye = torch.eye(total.shape[0], dtype=total.dtype)
    return torch.linalg.solve(total + ridge * eye, rhs + ridge * sum(flat) / len(flat)).T


@MERGE_METHODS.register("regmean", summary="closed-form merge of each linear layer from its inputs' Gram matrices",
                        needs_data=True, paper="Jin et al., Dataless Knowledge Fusion by Merging Weights of Language "
                        "Models (RegMean), ICLR 2023")
def regmean(examples: int = 256, alpha: float = 0.9, seed: int = 0) -> RegMean:
    return RegMean(int(examples), float(alpha), int(seed))
