"""``ease`` (Zhou et al., "Expandable Subspace Ensemble for Pre-Trained Model-Based Class-Incremental Learning",
CVPR 2024; reference sun-hailong/CVPR24-Ease @ 6d67508, ``models/ease.py``, its ``exps/*.json`` defaults:
``recalc_sim`` on, ``use_init_ptm`` off, α = 0.1).

The backbone stays frozen; task i trains only its own adapters (``transferlab.models.inject_task_adapters_``) with a
temporary cosine head over its classes (a learnable scale σ starting at 1, as the reference's ``proxy_fc``), on the
one loop. Then, with the adapter frozen, the means of the task's un-augmented training features in every subspace
0..i become its classes' prototypes there; an earlier task t's classes have no examples in the later subspaces d, so
their prototypes there are synthesised (the reference's ``solve_sim_reset``, every pair recomputed after each task):
with A the prototypes in subspace t of the classes of tasks d..i, B theirs in subspace d, and Â task t's own in
subspace t, the synthesised prototypes are softmax_rows(cos(Â, A)) · B. A class scores its cosine in its own
subspace plus α/i times its cosines in the others (:class:`~transferlab.models.EaseHead`).

Each subspace's test features of a task are computed once, after its adapter is final (the accuracy matrix reuses
them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import TransferlabError
from ._strategies import STRATEGIES
from ._strategy import Strategy
from ._streams import Stream


def synthesise(a_hat: Any, a: Any, b: Any) -> Any:
    """Prototypes of classes with no examples in a subspace: softmax over rows of the cosine similarities between
    their own prototypes ``a_hat`` [m, D] and those of classes that have examples there ``a`` [n, D], times the
    latter's prototypes in that subspace ``b`` [n, D']."""
    import torch

    sim = torch.nn.functional.normalize(a_hat, dim=1) @ torch.nn.functional.normalize(a, dim=1).T
    return torch.softmax(sim, dim=1) @ b


def _cosine_head(dim: int, n_out: int, live: list[int], seed: int) -> Any:
    """The temporary head a task's adapter trains with: cosine similarity to learnable weights (uniform ±1/√D, as
    the reference's ``CosineLinear``) times a learnable σ (from 1); outputs outside ``live`` are -inf."""
    import torch

    class Cosine(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            bound = 1.0 / math.sqrt(dim)
            self.weight = torch.nn.Parameter(torch.rand(n_out, dim, generator=g) * 2 * bound - bound)
            self.sigma = torch.nn.Parameter(torch.ones(1))
            dead = torch.ones(n_out, dtype=torch.bool)
            dead[live] = False
            self.register_buffer("dead", dead)

        def forward(self, f: Any) -> Any:
            z = self.sigma * (torch.nn.functional.normalize(f, dim=1)
                              @ torch.nn.functional.normalize(self.weight, dim=1).T)
            return z.masked_fill(self.dead, float("-inf"))

    return Cosine()


class Ease(Strategy):
    def __init__(self, r: int, alpha: float, lr_scale: float = 10.0) -> None:
        self.r, self.alpha, self.lr_scale = r, alpha, lr_scale
        self.switch: Any = None
        self.trained = 0  # adapters final so far
        self._test: dict[tuple[int, int], Any] = {}

    def config(self) -> dict[str, Any]:
        return {"r": self.r, "alpha": self.alpha, "lr_scale": self.lr_scale}

    def check(self, stream: Stream, name: str) -> None:
        if stream.modality != "image":
            raise TransferlabError(f"{name} puts adapters in an image backbone; the stream holds {stream.modality} "
                                   "data (prototype and ranpac take any backbone)")

    def install(self, run: Any) -> None:
        import torch

        from ..models import AdapterConfig, EaseHead, inject_task_adapters_

        cfg = AdapterConfig(r=self.r, insertion="parallel", placement="auto")
        size = int(run.built.image_size or 64)
        n = len(run.stream.tasks)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed)
            self.switch = inject_task_adapters_(run.modules["backbone"], cfg, n, size)
        for p in run.modules["backbone"].parameters():
            p.requires_grad_(False)  # a task's adapter trains in its turn
        meta = {"adapters": cfg.model_dump(), "tasks": n, "image_size": size}
        heads = run.modules["heads"]
        for k in list(heads.keys()):
            head = EaseHead(run.dim, n, heads[k].out_features, self.alpha, meta)
            for t, rows in self.rows(run):
                if (k == "0" and run.stream.kind == "class") or k == str(t):
                    head.own[rows] = t
            heads[k] = head.to(run.device())

    def rows(self, run: Any, upto: int | None = None) -> list[tuple[int, list[int]]]:
        """(task, its rows in its head) for every task (up to ``upto``): global ids in the one head of a class-
        incremental stream, 0..C-1 in the task's own head otherwise (a task's ``classes`` either way)."""
        tasks = run.stream.tasks[: (upto + 1) if upto is not None else None]
        return [(t, list(task.classes)) for t, task in enumerate(tasks)]

    def head(self, run: Any, t: int) -> Any:
        return run.modules["heads"]["0" if run.stream.kind == "class" else str(t)]

    def trainable(self, run: Any, i: int, modules: Any) -> list[Any]:
        """Task ``i``'s adapters and the temporary head, at ``lr_scale`` times the learning rate."""
        from ..models import adapter_parameters

        return [(p, self.lr_scale) for p in adapter_parameters(modules["backbone"], i)
                + list(modules["heads"].parameters())]

    def train_task(self, run: Any, i: int, data: dict[str, Any], training: Any) -> list[dict[str, Any]]:
        import torch

        from ..models import adapter_parameters

        kind_class = run.stream.kind == "class"
        n_out = len(run.stream.class_names) if kind_class else len(run.stream.tasks[i].classes)
        live = run.stream.tasks[i].classes if kind_class else list(range(n_out))
        temp = torch.nn.ModuleDict({"0" if kind_class else str(i): _cosine_head(run.dim, n_out, live,
                                                                                run.seed * 1000 + i)})
        params = adapter_parameters(run.modules["backbone"], i)
        for p in params:
            p.requires_grad_(True)
        self.switch.mode = i
        try:
            with run.swapped("heads", temp.to(run.device())):
                history = training(run, i, data)
        finally:
            self.switch.mode = None
            for p in params:
                p.requires_grad_(False)
        self.trained = i + 1
        self.set_prototypes(run, i)
        return history

    def subspace_features(self, run: Any, i: int, k: int, batch_size: int = 64) -> tuple[Any, np.ndarray]:
        """Task ``i``'s un-augmented training examples through adapter ``k`` alone."""
        import torch

        net, dev = run.modules["backbone"], run.device()
        net.eval()
        self.switch.mode = k
        feats, labels = [], []
        try:
            with torch.inference_mode():
                for b in torch.utils.data.DataLoader(run.task_tensors(i, augment=False), batch_size=batch_size):
                    feats.append(net(b["x"].to(dev)).double().cpu())
                    labels.append(b["y"].numpy())
        finally:
            self.switch.mode = None
        return torch.cat(feats), np.concatenate(labels)

    def set_prototypes(self, run: Any, i: int) -> None:
        """Task ``i``'s class means in every subspace 0..i; then every earlier task's prototypes in every later
        subspace synthesised anew; ``i + 1`` subspaces active."""
        import torch

        head = self.head(run, i)
        for k in range(i + 1):
            f, y = self.subspace_features(run, i, k)
            with torch.no_grad():
                for c in np.unique(y):
                    head.protos[int(c), k] = f[torch.as_tensor(y == c)].mean(0).to(head.protos.dtype)
        self.synthesise_all(run, i)
        self.switch.active = i + 1
        for h in run.modules["heads"].values():
            h.active.fill_(i + 1)

    def synthesise_all(self, run: Any, i: int) -> None:
        """For every earlier task t and later subspace d <= i: task t's prototypes in d from those of tasks d..i."""
        import torch

        rows = dict(self.rows(run, upto=i))
        with torch.no_grad():
            for t in range(i):
                own = self.head(run, t).protos[rows[t], t].double()
                for d in range(t + 1, i + 1):
                    a = torch.cat([self.head(run, k).protos[rows[k], t] for k in range(d, i + 1)]).double()
                    b = torch.cat([self.head(run, k).protos[rows[k], d] for k in range(d, i + 1)]).double()
                    h = self.head(run, t)
                    h.protos[rows[t], d] = synthesise(own, a, b).to(h.protos.dtype)

    def eval_features(self, run: Any, j: int, compute: Any) -> tuple[Any, Any]:
        """Task ``j``'s test features in every active subspace, subspace-major (as the expanded batch lays them
        out); a final adapter's are kept."""
        import torch

        if self.trained == 0:
            return compute()
        parts, y = [], None
        for k in range(self.switch.active):
            if (j, k) not in self._test:
                self.switch.mode = k
                try:
                    self._test[(j, k)] = compute()
                finally:
                    self.switch.mode = None
            f, y = self._test[(j, k)]
            parts.append(f)
        return torch.cat(parts), y

    def metrics(self, run: Any) -> dict[str, Any]:
        """A task adds its adapters' parameters (its head has none: prototypes); kept per class its prototype in
        every subspace, for all classes the adapters (float32)."""
        from ..models import adapter_parameters

        n = len(run.stream.tasks)
        per_task = sum(p.numel() for p in adapter_parameters(run.modules["backbone"], 0))
        return {**super().metrics(run), "extra_params_per_task": int(per_task), "bytes_per_class": 4 * n * run.dim,
                "shared_bytes": int(4 * n * per_task)}


@STRATEGIES.register("ease", summary="one adapter per task on a frozen backbone (trained with a temporary cosine "
                     "head), every adapter's features concatenated; old classes' prototypes in new subspaces "
                     "synthesised by cosine similarity", paper="Zhou et al., Expandable Subspace Ensemble for "
                     "Pre-Trained Model-Based Class-Incremental Learning, CVPR 2024",
                     reference="sun-hailong/CVPR24-Ease @ 6d67508 (solve_sim_reset, forward_reweight)")
def ease(r: int = 16, alpha: float = 0.1, lr_scale: float = 10.0) -> Strategy:
    """``r``: each adapter's bottleneck width (parallel adapters; on CNN blocks or a ViT's FFNs); ``alpha``: the
    weight of a class's cosines outside its own subspace, divided by the number of other subspaces; ``lr_scale``:
    the adapter and its temporary head learn at that many times the learning rate (the reference trains them 20
    epochs with SGD at 0.025-0.05; the one loop's default is AdamW at 1e-3 for a few epochs)."""
    if not isinstance(r, int) or r < 1:
        raise TransferlabError(f"r must be a positive integer, got {r!r}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise TransferlabError(f"alpha must be a finite number >= 0, got {alpha}")
    if not (math.isfinite(lr_scale) and lr_scale > 0):
        raise TransferlabError(f"lr_scale must be a finite number > 0, got {lr_scale}")
    return Ease(r, alpha, lr_scale)
