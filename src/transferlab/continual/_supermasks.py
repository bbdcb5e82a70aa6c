"""Supermasks over fixed weights (SupSup, Wortsman et al., NeurIPS 2020) and exclusive supermask subnetworks
(ExSSNeT, Yadav & Bansal, ACL Findings 2023).

Every convolution and linear weight W of the backbone gets, per task t, a score tensor S_t of W's shape; the task's
network uses W ⊙ M_t with M_t = top-k(|S_t|) (the ``density`` share of entries), and the scores learn through the
straight-through estimator (edge-popup: the mask's gradient is passed to the scores as is). Only the current task's
scores train and every backbone parameter is frozen; each task has its own batch-norm running statistics (as the
references' ``MultitaskNonAffineBN``: a masked network's activations differ from the full network's, so the
pretrained statistics do not fit it), starting from the pretrained ones. An earlier task's network — and its
predictions — never change: BWT is 0 by construction.

ExSSNeT adds a second phase per task: with M_t fixed, the weights in M_t that no earlier task's mask uses
(M_t ∧ ¬(M_1 ∨ … ∨ M_{t−1})) are trained too — exclusive updates, which leave every earlier network as it was.

Implemented as a torch parametrization on each weight (``torch.nn.utils.parametrize``), so any timm or transformers
backbone works unchanged."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import TransferlabError
from ._strategy import Strategy
from ._streams import Stream


def _torch() -> Any:
    import torch

    return torch


class _TopK(_torch().autograd.Function):
    """Forward: the binary top-k mask of the scores; backward: the gradient passed through (edge-popup)."""

    @staticmethod
    def forward(ctx: Any, scores: Any, k: int) -> Any:  # noqa: ANN401
        torch = _torch()
        flat = scores.flatten()
        out = torch.zeros_like(flat)
        out[flat.topk(k, sorted=False).indices] = 1.0
        return out.view_as(scores)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:  # noqa: ANN401
        return grad, None


class Control:
    """Which task's mask — and batch-norm statistics — the network uses now. Setting ``task`` stores the running
    statistics of the task in use and loads the new task's."""

    _STATS = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, norms: dict[str, Any] | None = None, n_tasks: int = 1) -> None:
        self.norms = norms or {}
        self.stats = [{n: {k: getattr(m, k).detach().clone() for k in self._STATS} for n, m in self.norms.items()}
                      for _ in range(n_tasks)]
        self._task = 0

    @property
    def task(self) -> int:
        return self._task

    @task.setter
    def task(self, j: int) -> None:
        if j == self._task:
            return
        with _torch().no_grad():
            for n, m in self.norms.items():
                for k in self._STATS:
                    self.stats[self._task][n][k].copy_(getattr(m, k))
                    getattr(m, k).copy_(self.stats[j][n][k])
        self._task = j

    def norm_state(self, j: int) -> dict[str, Any]:
        """Task ``j``'s batch-norm statistics, by state-dict key."""
        cur = self._task
        return {f"{n}.{k}": (getattr(m, k) if j == cur else self.stats[j][n][k]).detach().cpu().clone()
                for n, m in self.norms.items() for k in self._STATS}


class Supermask(_torch().nn.Module):
    """The parametrization W -> W ⊙ top-k(|S_task|): one score tensor per task (kaiming-uniform, seeded), the
    ``used`` union of finished tasks' masks (ExSSNeT's exclusive updates)."""

    def __init__(self, shape: tuple[int, ...], n_tasks: int, density: float, control: Control, seed: int) -> None:
        torch = _torch()
        super().__init__()
        self.control, self.density = control, density
        g = torch.Generator().manual_seed(seed)
        scores = []
        for _ in range(n_tasks):
            s = torch.empty(shape)
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform with a = sqrt(5), as nn.Linear's init
            s.uniform_(-bound, bound, generator=g)
            scores.append(torch.nn.Parameter(s, requires_grad=False))  # a task's scores train only in its turn
        self.scores = torch.nn.ParameterList(scores)
        self.k = max(1, int(round(density * math.prod(shape))))
        self.register_buffer("used", torch.zeros(shape, dtype=torch.bool))

    def mask(self, task: int) -> Any:
        return _TopK.apply(self.scores[task].abs(), self.k)

    def forward(self, w: Any) -> Any:
        return w * self.mask(self.control.task).to(w.dtype)


def install(backbone: Any, n_tasks: int, density: float, seed: int) -> tuple[Control, dict[str, Supermask]]:
    """A supermask on every convolution and linear weight of ``backbone`` (in place); every other parameter frozen.
    Returns the control and the masks by module name."""
    torch = _torch()
    from torch.nn.utils import parametrize

    if not 0 < density <= 1:
        raise TransferlabError(f"density must lie in (0, 1], got {density}")
    layers = [(n, m) for n, m in backbone.named_modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Conv1d)) and not parametrize.is_parametrized(m)]
    if not layers:
        raise TransferlabError(f"{type(backbone).__name__} has no convolution or linear weights to mask: supsup and "
                               "exssnet need them (naive, joint, replay, ewc and lwf still work)")
    for p in backbone.parameters():
        p.requires_grad_(False)
    norms = {n: m for n, m in backbone.named_modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
             and m.running_mean is not None}
    control = Control(norms, n_tasks)
    masks = {}
    for i, (name, mod) in enumerate(layers):
        sm = Supermask(tuple(mod.weight.shape), n_tasks, density, control, seed * 100_003 + i)
        parametrize.register_parametrization(mod, "weight", sm, unsafe=True)
        mod.parametrizations.weight.original.requires_grad_(False)
        masks[name] = sm
    return control, masks


def score_parameters(masks: dict[str, Supermask], task: int) -> list[Any]:
    out = []
    for m in masks.values():
        p = m.scores[task]
        p.requires_grad_(True)
        out.append(p)
    return out


def freeze_scores(masks: dict[str, Supermask]) -> None:
    for m in masks.values():
        for p in m.scores:
            p.requires_grad_(False)


def exclusive_weights(backbone: Any, masks: dict[str, Supermask], task: int) -> tuple[list[Any], list[Any]]:
    """ExSSNeT's second phase: the original weights train where the task's mask is on and no earlier mask was
    (gradient hooks zero the rest). Returns (parameters, hook handles)."""
    torch = _torch()
    params, hooks = [], []
    mods = dict(backbone.named_modules())
    for name, sm in masks.items():
        w = mods[name].parametrizations.weight.original
        with torch.no_grad():
            free = (sm.mask(task) > 0) & ~sm.used
        w.requires_grad_(True)
        hooks.append(w.register_hook(lambda g, free=free: g * free.to(g.dtype)))
        params.append(w)
    return params, hooks


def finish_task(backbone: Any, masks: dict[str, Supermask], task: int) -> None:
    """After a task: its mask joins ``used``; every weight and score is frozen again."""
    torch = _torch()
    mods = dict(backbone.named_modules())
    with torch.no_grad():
        for name, sm in masks.items():
            sm.used |= sm.mask(task) > 0
            mods[name].parametrizations.weight.original.requires_grad_(False)
    freeze_scores(masks)


def task_weights(backbone: Any, masks: dict[str, Supermask], task: int) -> dict[str, Any]:
    """The masked weights (``module.weight``) and batch-norm statistics of one task's network, by state-dict key."""
    torch = _torch()
    mods = dict(backbone.named_modules())
    with torch.no_grad():
        out = {f"{name}.weight": (mods[name].parametrizations.weight.original * sm.mask(task)).detach().cpu()
               .contiguous() for name, sm in masks.items()}
    if masks:
        out.update(next(iter(masks.values())).control.norm_state(task))
    return out


def remove(backbone: Any, masks: dict[str, Supermask], task: int) -> None:
    """Back to plain modules whose weights are ``task``'s masked weights (for saving)."""
    from torch.nn.utils import parametrize

    weights = task_weights(backbone, masks, task)
    mods = dict(backbone.named_modules())
    for name in masks:
        parametrize.remove_parametrizations(mods[name], "weight", leave_parametrized=False)
    unexpected = backbone.load_state_dict(weights, strict=False).unexpected_keys
    if unexpected:
        raise RuntimeError(f"task weights name no module of the backbone: {unexpected[:3]}")


class Supermasks(Strategy):
    """SupSup (``exclusive=False``) and ExSSNeT (``exclusive=True``): the masks live here, the task in use is chosen
    per task at training and at test time, and each saved task carries its masked weights and norm statistics."""

    update_norm_stats = True  # each task keeps its own batch-norm statistics: the task's own update

    def __init__(self, density: float, exclusive: bool, knn_transfer: bool, score_lr_scale: float = 10.0,
                 head_lr_scale: float = 10.0) -> None:
        self.density, self.exclusive, self.knn_transfer = density, exclusive, knn_transfer
        self.score_lr_scale, self.head_lr_scale = score_lr_scale, head_lr_scale
        self.transfers: dict[int, int | None] = {}
        self.control: Control | None = None
        self.masks: dict[str, Supermask] = {}

    def config(self) -> dict[str, Any]:
        return {"density": self.density, "exclusive": self.exclusive, "knn_transfer": self.knn_transfer,
                "score_lr_scale": self.score_lr_scale, "head_lr_scale": self.head_lr_scale}

    def check(self, stream: Stream, name: str) -> None:
        if stream.kind != "task":
            raise TransferlabError(f"{name} picks each task's mask by the task at test time: it needs a task-"
                                   "incremental stream (--stream A,B,...), not a class split")

    def install(self, run: Any) -> None:
        self.control, self.masks = install(run.modules["backbone"], len(run.stream.tasks), self.density, run.seed)

    def use_task(self, run: Any, j: int) -> None:
        if self.control is not None:
            self.control.task = j

    def before_task(self, run: Any, i: int) -> None:
        if self.knn_transfer and i > 0:
            self.transfers[i] = self.knn_mask_transfer(run, i)

    def trainable(self, run: Any, i: int, modules: Any) -> list[Any]:
        """The task's scores (edge-popup's large step: only their order matters) and its fresh head learn faster than
        the exclusive weights of exssnet's second phase."""
        scores = {id(m.scores[i]) for m in self.masks.values()}
        out = [(p, self.score_lr_scale if id(p) in scores else 1.0)
               for p in modules["backbone"].parameters() if p.requires_grad]
        return out + [(p, self.head_lr_scale) for p in modules["heads"][str(i)].parameters()]

    def train_task(self, run: Any, i: int, data: dict[str, Any], training: Any) -> list[dict[str, Any]]:
        """The scores (and the head) train; then, for exssnet, the weights only this task's mask uses (and the
        head). No weight decay: it would move weights an earlier mask uses."""
        backbone = run.modules["backbone"]
        score_parameters(self.masks, i)
        h = training(run, i, data, "scores", weight_decay=0.0)
        if self.exclusive:
            freeze_scores(self.masks)
            _, hooks = exclusive_weights(backbone, self.masks, i)
            try:
                h2 = training(run, i, data, "weights", weight_decay=0.0)
            finally:
                for hk in hooks:
                    hk.remove()
            h = h + [{**row, "epoch": row["epoch"] + len(h), "phase": "weights"} for row in h2]
        self.recalibrate_norms(run, i)
        finish_task(backbone, self.masks, i)
        return h

    def metrics(self, run: Any) -> dict[str, Any]:
        """A task's mask bits; kept for all tasks: every task's bits (as bytes) and batch-norm statistics."""
        bits = int(sum(m.scores[0].numel() for m in self.masks.values()))
        stats = sum(t.element_size() * t.numel() for j in range(len(run.stream.tasks))
                    for t in (self.control.norm_state(j).values() if self.control else []))
        return {**super().metrics(run), "mask_bits_per_task": bits,
                "shared_bytes": int(len(run.stream.tasks) * bits // 8 + stats)}

    def export_tasks_(self, net: Any, n_tasks: int) -> list[dict[str, Any]]:
        """Each task's network is its masked weights: every task's go beside its head; ``net`` (a copy of the
        backbone) becomes task 0's plain network."""
        masks = {n: dict(net.named_modules())[n].parametrizations.weight[0] for n in self.masks}
        per_task = [task_weights(net, masks, j) for j in range(n_tasks)]
        remove(net, masks, 0)
        return per_task

    def recalibrate_norms(self, run: Any, i: int, batch_size: int = 64) -> None:
        """Task ``i``'s batch-norm statistics re-estimated for its final network, as torch's ``update_bn`` does: a
        cumulative average over one seeded, shuffled pass of its un-augmented training examples (the running
        averages of training lag behind a mask that kept changing; with few steps they are far off). Only task
        ``i``'s statistics change; a task too small for a batch of two keeps those of its training."""
        from ..train import reestimate_norms_

        torch = _torch()
        if self.control is None or not self.control.norms:
            return
        data = run.task_tensors(i, augment=False)
        if len(data) < 2:
            return
        run.set_task(i)
        backbone, dev = run.modules["backbone"], run.device()
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,  # batches mix the classes
                                             generator=torch.Generator().manual_seed(run.seed * 1000 + i))
        reestimate_norms_(backbone, (b["x"] for b in loader), norms=list(self.control.norms.values()), device=dev)
        backbone.eval()

    def knn_mask_transfer(self, run: Any, i: int) -> int | None:
        """ExSSNeT's optional transfer: the earlier task whose masked network's features give the best leave-one-out
        1-nearest-neighbour accuracy (cosine) on task ``i``'s training examples, if better than chance; its scores
        become task ``i``'s starting scores. Returns that task, or None."""
        torch = _torch()
        task = run.stream.tasks[i]
        n = len(task.train)
        keep = sorted(np.random.default_rng(run.seed).choice(n, min(n, 2000), replace=False).tolist())
        data = run.examples([(i, j) for j in keep], augment=False)  # at most 2,000: the similarity is N x N
        y = torch.as_tensor(task.train.labels[keep])
        best, best_acc = None, 1.0 / max(1, len(task.classes))
        dev, backbone = run.device(), run.modules["backbone"]
        for s in range(i):
            run.set_task(s)
            feats = []
            with torch.inference_mode():
                backbone.eval()
                for b in torch.utils.data.DataLoader(data, batch_size=64):
                    feats.append(backbone(b["x"].to(dev)).float().cpu())
            f = torch.nn.functional.normalize(torch.cat(feats), dim=1)
            sim = f @ f.T
            sim.fill_diagonal_(-2.0)
            acc = float((y[sim.argmax(1)] == y).float().mean())
            if acc > best_acc:
                best, best_acc = s, acc
        if best is not None:
            with torch.no_grad():
                for m in self.masks.values():
                    m.scores[i].copy_(m.scores[best])
        return best
