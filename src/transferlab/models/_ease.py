"""EASE's network (Zhou et al., "Expandable Subspace Ensemble for Pre-Trained Model-Based Class-Incremental
Learning", CVPR 2024; reference sun-hailong/CVPR24-Ease): a frozen backbone with one set of bottleneck adapters per
task (the unified-view adapters of ``_adapters``, one per adapted module and task), whose features in every task's
subspace are concatenated, and a cosine head over per-class prototypes in each subspace.

- :class:`TaskAdapted` wraps a module with one adapter per task; an :class:`AdapterSwitch` says which adapter
  acts: one (``mode = k``: training task k's adapter, or the features of subspace k alone), or all ``active`` ones
  at once: a forward pre-hook on the network repeats the batch ``active`` times and copy k goes through adapter k
  everywhere, so the pooled features come out subspace-major (``active × B`` rows);
- :class:`EaseHead` reads those rows as ``[B, active, D]`` and scores class c by its cosine with its prototype in
  its own task's subspace plus α/(active − 1) times its cosines in the others (the reference's ``forward_reweight``
  with ``use_init_ptm`` off and σ = 1).

The card's ``structure`` is ``{"kind": "ease", "adapters": AdapterConfig, "tasks": T, "image_size": S}``;
:func:`rebuild_` injects the adapters the same way and re-creates the head from the state dict's shapes."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import TransferlabError
from ._adapters import AdapterConfig, Bottleneck, _io_shapes, _targets, is_text_model, replace_module_
from ._build import head_module_name
from ._structures import STRUCTURES


class AdapterSwitch:
    """Which task adapters act: ``mode`` k (one), or None (the first ``active`` at once, the batch repeated)."""

    def __init__(self, n_tasks: int) -> None:
        self.n_tasks, self.mode, self.active = n_tasks, None, 1

    def expand(self, module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The network's forward pre-hook: with every adapter acting, copy k of the batch is adapter k's."""
        if self.mode is not None or self.active == 1:
            return None
        x = args[0]
        return (x.repeat(self.active, *[1] * (x.ndim - 1)), *args[1:])


class TaskAdapted(torch.nn.Module):
    """A module with one bottleneck adapter per task: ``f(x) + s·delta_k(z)`` (``z``: the input or, sequential, the
    output), k the switch's mode, or the copy of the batch a row belongs to."""

    def __init__(self, inner: Any, adapters: torch.nn.ModuleList, insertion: str, switch: AdapterSwitch) -> None:
        super().__init__()
        self.inner, self.adapters, self.insertion, self.switch = inner, adapters, insertion, switch

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(x, *args, **kwargs)
        z = out if self.insertion == "sequential" else x
        if z.ndim == 4 and z.shape[-2:] != out.shape[-2:]:  # a strided CNN block: read at the output's resolution
            z = torch.nn.functional.adaptive_avg_pool2d(z, out.shape[-2:])
        sw = self.switch
        if sw.mode is not None:
            return out + self.adapters[sw.mode](z)
        if sw.active == 1:
            return out + self.adapters[0](z)
        return out + torch.cat([self.adapters[k](c) for k, c in enumerate(z.chunk(sw.active))])


def inject_task_adapters_(model: Any, config: AdapterConfig, n_tasks: int, image_size: int = 64) -> AdapterSwitch:
    """``n_tasks`` adapters on every module ``config`` places one on (in place; everything else frozen, the
    adapters trainable); returns the switch. Image backbones only (timm CNNs and ViTs)."""
    if is_text_model(model):
        raise TransferlabError("task adapters (ease) take image backbones; a text model has no such placement yet")
    if config.prefix:
        raise TransferlabError("task adapters (ease) take bottleneck adapters only (prefix=0)")
    for p in model.parameters():
        p.requires_grad_(False)
    _, wrap = _targets(model, config.placement)
    shapes = _io_shapes(model, wrap, image_size)
    switch = AdapterSwitch(n_tasks)
    for n in wrap:
        d_in, d_out = shapes[n]
        if config.insertion == "sequential":
            d_in = d_out
        ads = torch.nn.ModuleList(Bottleneck(d_in, d_out, config.r, config.scaling, config.learned_scaling)
                                  for _ in range(n_tasks))
        replace_module_(model, n, TaskAdapted(model.get_submodule(n), ads, config.insertion, switch))
    model.register_forward_pre_hook(switch.expand)
    return switch


def adapter_parameters(model: Any, task: int) -> list[Any]:
    """Task ``task``'s adapter parameters, in every adapted module."""
    return [p for m in model.modules() if isinstance(m, TaskAdapted) for p in m.adapters[task].parameters()]


class EaseHead(torch.nn.Module):
    """Cosine scores over per-subspace prototypes ``protos`` [C, T, D]; ``own``: each class's task; ``active``: the
    subspaces in use (the rows it reads are ``active × B``, subspace-major)."""

    def __init__(self, dim: int, n_tasks: int, num_classes: int, alpha: float = 0.1,
                 meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.alpha, self.meta = float(alpha), dict(meta or {})
        self.register_buffer("protos", torch.zeros(num_classes, n_tasks, dim))
        self.register_buffer("own", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("active", torch.tensor(1))

    @property
    def in_features(self) -> int:
        return int(self.protos.shape[2])

    @property
    def out_features(self) -> int:
        return int(self.protos.shape[0])

    def structure(self) -> dict[str, Any]:
        return {"kind": "ease", **self.meta, "alpha": self.alpha}

    def weights(self) -> torch.Tensor:
        """[C, active]: 1 in a class's own subspace, α/(active − 1) in the others."""
        s = int(self.active)
        w = torch.full((self.out_features, s), self.alpha / max(s - 1, 1), device=self.protos.device)
        mine = self.own < s
        w[mine.nonzero().squeeze(1), self.own[mine]] = 1.0
        return w

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        s = int(self.active)
        f = f.reshape(s, -1, f.shape[-1]).transpose(0, 1)  # B, S, D
        fn = torch.nn.functional.normalize(f.float(), dim=-1)
        pn = torch.nn.functional.normalize(self.protos[:, :s].float(), dim=-1)
        return torch.einsum("bsd,csd,cs->bc", fn, pn, self.weights())


def rebuild_(net: Any, state: dict[str, Any], structure: dict[str, Any]) -> Any:
    """A saved EASE network: the task adapters injected as the card says, the head from the state's shapes."""
    switch = inject_task_adapters_(net, AdapterConfig(**structure.get("adapters", {})), int(structure["tasks"]),
                                   int(structure.get("image_size") or 64))
    name = head_module_name(net)
    c, t, d = state[f"{name}.protos"].shape
    switch.active = int(state[f"{name}.active"])
    meta = {k: v for k, v in structure.items() if k not in ("kind", "alpha")}
    replace_module_(net, name, EaseHead(int(d), int(t), int(c), float(structure.get("alpha", 0.1)), meta))
    return net


STRUCTURES.register("ease", summary="one bottleneck adapter per task on a frozen backbone, every task's features "
                    "concatenated, cosine prototypes per subspace (EASE)")(rebuild_)
