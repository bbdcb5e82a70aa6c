"""RegMean++ (Nguyen et al., 2025, "RegMean++: Enhancing Effectiveness and Generalization of Regression Mean for
Model Merging"): RegMean whose Gram matrices are computed on the *merged* model's activations, layer by layer, so
that each layer's merge sees the inputs the merged network will really feed it (the dependencies between layers),
while the layer itself is still each task's own (the dependencies inside it).

The procedure, read from tanganke/fusion_bench @ 54c9e8c (``fusion_bench/method/regmean_plusplus/regmean_plusplus.py``,
``RegMeanAlgorithmPlusPlus.run``, and ``clip_regmean_plusplus.py``; our own code): the tensors before the first layer
(embeddings) are averaged; then, for each layer ``l`` in order and each task ``t``, task ``t``'s examples pass through
the merged layers ``< l`` and task ``t``'s own layer ``l``, whose linear maps' input Gram matrices (``X^T X / rows``,
off-diagonal entries scaled by ``alpha``: the reference's reduce_non_diagonal_ratio, 0.95 in its configuration) give
layer ``l``'s RegMean solution; the layer's other tensors (norms, biases) are averaged, and the merged layer is what
the next layer's inputs pass through. The reference's layers are a transformer's blocks; here a layer is a block of
any network: the part of a module's name up to its last numeric component (``blocks.3.2`` of
``blocks.3.2.conv_pw``, ``encoder.layer.1`` of ``encoder.layer.1.attention.self.query``), or a whole module outside
such containers (``conv_head``), taken in the order a forward pass runs them. Linear layers and 1x1 convolutions are
merged by RegMean; every other tensor, also outside the layers, is averaged. Each task's model is held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._arith import Method, thetas_of
from ._registry import MERGE_METHODS
from ._regmean import check_gram_options, input_grams, is_linear_map, regmean_solve, regularised


def block_of(module: str) -> str:
    """The layer a module belongs to: its name up to its last numeric component (the whole name without one)."""
    parts = module.split(".")
    idx = [i for i, p in enumerate(parts) if p.isdigit()]
    return ".".join(parts[: idx[-1] + 1]) if idx else module


def layer_groups(net: Any, keys: set[str], batch: Any) -> list[tuple[str, list[str]]]:
    """``(layer, the weight keys of its linear maps)`` in the order one forward pass on ``batch`` first runs them."""
    import torch

    order: list[str] = []
    hooks = []
    for name, mod in net.named_modules():
        key = f"{name}.weight" if name else "weight"
        if key in keys and is_linear_map(mod):
            hooks.append(mod.register_forward_hook(lambda *_, k=key: order.append(k) if k not in order else None))
    try:
        with torch.inference_mode():
            net.eval()(batch)
    finally:
        for h in hooks:
            h.remove()
    groups: dict[str, list[str]] = {}
    for k in order:
        groups.setdefault(block_of(k[: -len(".weight")]), []).append(k)
    return list(groups.items())


def regmean_pp_merge(nets: list[Any], batches: list[list[Any]], keys: list[str], alpha: float) -> dict[str, Any]:
    """The merged tensors (float64) of ``keys`` (float tensors of every net's state dict) by RegMean++: ``nets`` one
    model per task (changed in place: their tensors become the merged ones, layer by layer), ``batches`` each task's
    list of ``(x, y)`` batches."""
    import torch

    states = [{k: v.detach().cpu().to(torch.float64) for k, v in n.state_dict().items() if k in set(keys)}
              for n in nets]
    merged = {k: torch.stack([s[k] for s in states]).mean(0) for k in keys}
    groups = layer_groups(nets[0], set(keys), batches[0][0][0].to(next(nets[0].parameters()).device))
    owner = {k: g for k in keys for g, _ in groups if k.startswith(g + ".")}

    def load(ks: list[str]) -> None:
        for n in nets:
            sd = n.state_dict()
            with torch.no_grad():
                for k in ks:
                    sd[k].copy_(merged[k].to(sd[k].dtype))

    load([k for k in keys if k not in owner])  # outside every layer (embeddings, stems): averaged, merged first
    for group, weights in groups:
        grams = [input_grams(n, b, set(weights), stop_early=True) for n, b in zip(nets, batches, strict=True)]
        for k in weights:
            if all(k in g for g in grams):
                merged[k] = regmean_solve([s[k] for s in states], [regularised(g[k], alpha) for g in grams]) \
                    .reshape(merged[k].shape)
        load([k for k in keys if owner.get(k) == group])
    return merged


@dataclass
class RegMeanPlusPlus(Method):
    examples: int = 256
    alpha: float = 0.95
    seed: int = 0
    needs_data = True
    _merged: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_gram_options("regmean_pp", self.alpha, self.examples)

    def options(self) -> dict[str, Any]:
        return {"examples": self.examples, "alpha": self.alpha, "seed": self.seed}

    def prepare(self, job: Any) -> None:
        import torch

        nets = [job.task_model(i) for i in range(len(job.tasks))]
        batches = [list(torch.utils.data.DataLoader(job.task_data(i, n, self.examples, self.seed), batch_size=32))
                   for i, n in enumerate(nets)]
        held = set(nets[0].state_dict())
        self._merged = regmean_pp_merge(nets, batches, [k for k in job.float_keys if k in held], self.alpha)

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        if key in self._merged:
            return self._merged[key].to(base.dtype)
        return torch.stack(thetas_of(base, deltas)).mean(0)


@MERGE_METHODS.register("regmean_pp", summary="RegMean layer by layer, each layer's Gram matrices on the merged "
                        "earlier layers' activations", needs_data=True,
                        paper="Nguyen et al., RegMean++: Enhancing Effectiveness and Generalization of Regression "
                              "Mean for Model Merging, arXiv 2508.03121, 2025",
                        reference="tanganke/fusion_bench 54c9e8c (fusion_bench/method/regmean_plusplus)")
def regmean_pp(examples: int = 256, alpha: float = 0.95, seed: int = 0) -> RegMeanPlusPlus:
    return RegMeanPlusPlus(int(examples), float(alpha), int(seed))
