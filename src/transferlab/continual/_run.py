"""One continual run: the shared backbone, one head per task (task-incremental) or one growing head
(class-incremental), the data of each task with its task id, the per-task training on the one loop, and the
accuracy matrix."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..train import Objective, StepContext
from ._streams import Stream


class TaskTensors:
    """``{"x", "y", "task"}`` examples of some tasks' examples (``pairs``: (task, index) or a whole task)."""

    def __init__(self, run: Run, pairs: list[tuple[int, int]], augment: bool) -> None:
        self.run, self.pairs = run, pairs
        self._data: dict[int, Any] = {}
        for t in sorted({t for t, _ in pairs}):
            self._data[t] = run.built.tensors(run.stream.tasks[t].train, augment=augment)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict[str, Any]:
        import torch

        t, j = self.pairs[k]
        x, y = self._data[t][j]
        if self.run.built.modality == "text":  # tasks are padded to their own longest text: one length for all
            x = torch.nn.functional.pad(x, (0, (self.run.built.max_length or 256) - x.shape[-1]))
        return {"x": x, "y": y, "task": torch.tensor(t)}


class Run:
    def __init__(self, stream: Stream, built: Any, strategy: Any, seed: int) -> None:
        import torch

        self.stream, self.built, self.strategy, self.seed = stream, built, strategy, seed
        backbone = built.net
        backbone.reset_classifier(0)  # pooled features out; the heads live beside it
        dim = _feature_dim(backbone, built)
        torch.manual_seed(seed)
        n = len(stream.class_names) if stream.kind == "class" else None
        heads = torch.nn.ModuleDict({str(i): torch.nn.Linear(dim, n or len(t.classes))
                                     for i, t in enumerate(stream.tasks)} if n is None
                                    else {"0": torch.nn.Linear(dim, n)})
        self.modules: dict[str, Any] = {"backbone": backbone, "heads": heads}
        self.dim = dim
        self.control: Any = None
        self.masks: dict[str, Any] = {}
        if strategy.supermask:
            from ._supermasks import install

            self.control, self.masks = install(backbone, len(stream.tasks), strategy.density, seed)
        if hasattr(strategy, "reseed"):
            strategy.reseed(seed)

    def set_task(self, j: int) -> None:
        """The task whose supermask the backbone uses (supsup, exssnet)."""
        if self.control is not None:
            self.control.task = j

    def recalibrate_norms(self, i: int, batch_size: int = 64) -> None:
        """Task ``i``'s batch-norm statistics re-estimated for its final network, as torch's ``update_bn`` does: a
        cumulative average over one seeded, shuffled pass of its un-augmented training examples (the running
        averages of training lag behind a mask that kept changing; with few steps they are far off). Only task
        ``i``'s statistics change; a task too small for a batch of two keeps those of its training."""
        import torch

        if self.control is None or not self.control.norms:
            return
        data = self.task_tensors(i, augment=False)
        if len(data) < 2:
            return
        self.set_task(i)
        norms = list(self.control.norms.values())
        backbone, dev = self.modules["backbone"].eval(), self.device()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: every batch counts alike
            m.train()
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,  # batches mix the classes
                                             generator=torch.Generator().manual_seed(self.seed * 1000 + i))
        try:
            with torch.no_grad():
                for b in loader:
                    if len(b["x"]) > 1:  # one example has no variance
                        backbone(b["x"].to(dev))
        finally:
            for m, mo in zip(norms, momenta, strict=True):
                m.momentum = mo
            backbone.eval()

    def knn_mask_transfer(self, i: int) -> int | None:
        """ExSSNeT's optional transfer: the earlier task whose masked network's features give the best leave-one-out
        1-nearest-neighbour accuracy (cosine) on task ``i``'s training examples, if better than chance; its scores
        become task ``i``'s starting scores. Returns that task, or None."""
        import torch

        n = len(self.stream.tasks[i].train)
        keep = sorted(np.random.default_rng(self.seed).choice(n, min(n, 2000), replace=False).tolist())
        data = TaskTensors(self, [(i, j) for j in keep], augment=False)  # at most 2,000: the similarity is N x N
        y = torch.as_tensor(self.stream.tasks[i].train.labels[keep])
        best, best_acc = None, 1.0 / max(1, len(self.stream.tasks[i].classes))
        dev = self.device()
        for s in range(i):
            self.set_task(s)
            feats = []
            with torch.inference_mode():
                self.modules["backbone"].eval()
                for b in torch.utils.data.DataLoader(data, batch_size=64):
                    feats.append(self.modules["backbone"](b["x"].to(dev)).float().cpu())
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

    # ---------------------------------------------------------------------------------------------------- data
    def task_tensors(self, i: int, augment: bool = True) -> TaskTensors:
        return TaskTensors(self, [(i, j) for j in range(len(self.stream.tasks[i].train))], augment)

    def buffer_tensors(self, buffer: list[tuple[int, int]]) -> TaskTensors:
        return TaskTensors(self, list(buffer), augment=True)

    # ---------------------------------------------------------------------------------------------------- heads
    def seen_classes(self, i: int) -> list[int]:
        return [c for t in self.stream.tasks[: i + 1] for c in t.classes]

    def logits(self, modules: Any, f: Any, task: int, upto: int) -> Any:
        """Task ``task``'s logits: its own head (task-incremental), or the one head with the classes of tasks after
        ``upto`` masked out (class-incremental)."""
        if self.stream.kind == "task":
            return modules["heads"][str(task)](f)
        z = modules["heads"]["0"](f)
        mask = self._mask(upto, z.device)
        return z.masked_fill(~mask, float("-inf"))

    def _mask(self, upto: int, device: Any) -> Any:
        import torch

        m = torch.zeros(len(self.stream.class_names), dtype=torch.bool, device=device)
        m[self.seen_classes(upto)] = True
        return m

    def task_loss(self, modules: Any, f: Any, y: Any, task: Any, upto: int) -> Any:
        """Mean cross-entropy of examples from possibly several tasks, each on its task's head."""
        import torch.nn.functional as F  # noqa: N812

        if self.stream.kind == "class":
            return F.cross_entropy(self.logits(modules, f, 0, upto).float(), y)
        total = f.new_zeros(())
        for t in task.unique().tolist():
            sel = task == t
            total = total + F.cross_entropy(modules["heads"][str(t)](f[sel]).float(), y[sel], reduction="sum")
        return total / len(y)

    def shared_parameters(self, modules: Any) -> Iterator[tuple[str, Any]]:
        """What every task shares (EWC's parameters): the backbone, and the one head of a class-incremental
        stream."""
        for n, p in modules["backbone"].named_parameters():
            if p.requires_grad:
                yield f"backbone.{n}", p
        if self.stream.kind == "class":
            for n, p in modules["heads"].named_parameters():
                yield f"heads.{n}", p

    def snapshot_old(self) -> None:
        """A frozen copy of the backbone and heads (LwF's teacher for the earlier tasks)."""
        for name in ("backbone", "heads"):
            old = copy.deepcopy(self.modules[name]).eval()
            for p in old.parameters():
                p.requires_grad_(False)
            self.modules[f"old_{name}"] = old

    def old_outputs(self, modules: Any, f_new: Any, f_old: Any, i: int) -> Iterator[tuple[Any, Any]]:
        if self.stream.kind == "task":
            for k in range(i):
                yield modules["heads"][str(k)](f_new), modules["old_heads"][str(k)](f_old)
        else:
            old = self.seen_classes(i - 1)
            yield modules["heads"]["0"](f_new)[:, old], modules["old_heads"]["0"](f_old)[:, old]

    # ---------------------------------------------------------------------------------------------------- measures
    def device(self) -> Any:
        return next(self.modules["backbone"].parameters()).device

    def empirical_fisher(self, i: int, batch_size: int = 32) -> dict[str, Any]:
        """Mean over task ``i``'s mini-batches (un-augmented) of the squared gradient of the batch's mean
        cross-entropy, per shared parameter (Avalanche's EWC estimate)."""
        import torch

        mods = self.modules
        was = {n: m.training for n, m in mods.items()}
        for m in mods.values():
            m.eval()
        params = dict(self.shared_parameters(mods))
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        dev = self.device()
        n = 0
        for batch in torch.utils.data.DataLoader(self.task_tensors(i, augment=False), batch_size=batch_size):
            for p in params.values():
                p.grad = None
            f = mods["backbone"](batch["x"].to(dev))
            loss = self.task_loss(mods, f, batch["y"].to(dev), batch["task"].to(dev), i)
            loss.backward()
            for k, p in params.items():
                if p.grad is not None:
                    fisher[k] += p.grad.detach() ** 2
            n += 1
        for m in mods.values():  # no gradient left behind (the heads' included)
            for p in m.parameters():
                p.grad = None
        for name, m in mods.items():
            m.train(was[name])
        return {k: v / max(n, 1) for k, v in fisher.items()}

    def accuracy(self, j: int, upto: int, batch_size: int = 64) -> float:
        """Accuracy on task ``j``'s test split after training up to task ``upto`` (class-incremental: among the
        classes seen so far; a task whose classes are not seen yet scores 0)."""
        import torch

        mods = self.modules
        for m in mods.values():
            m.eval()
        self.set_task(j)
        data = self.built.tensors(self.stream.tasks[j].test)
        dev = self.device()
        right = total = 0
        with torch.inference_mode():
            for x, y in torch.utils.data.DataLoader(data, batch_size=batch_size):
                z = self.logits(mods, mods["backbone"](x.to(dev)), j, upto)
                right += int((z.argmax(1).cpu() == y).sum())
                total += len(y)
        return right / max(total, 1)


def _feature_dim(backbone: Any, built: Any) -> int:
    import torch

    from ..models._bottleneck import pooled_dim

    try:
        return pooled_dim(backbone)
    except ValueError:
        pass
    x = backbone.example_input() if hasattr(backbone, "example_input") else torch.zeros(
        1, 3, built.image_size or 32, built.image_size or 32)
    with torch.no_grad():
        return int(backbone.eval()(x).shape[1])


class ContinualObjective(Objective):
    """Training on task ``i`` (or, for ``joint``, on every task): each example's cross-entropy on its task's head,
    plus the strategy's term."""

    def __init__(self, run: Run, i: int, strategy_name: str, options: dict[str, Any], phase: str = "") -> None:
        self.run, self.i, self.name, self.options, self.phase = run, i, strategy_name, dict(options), phase
        # supermask strategies keep batch-norm statistics per task (see _supermasks): the task's own update
        self.update_norm_stats = bool(run.strategy.supermask)

    def trainable(self, modules: Any) -> list[Any]:
        strat = self.run.strategy
        heads = modules["heads"]
        keys = list(heads.keys()) if self.run.stream.kind == "class" or strat.joint else \
            [str(self.i)] if strat.supermask else [str(k) for k in range(self.i + 1)]
        head = [p for k in keys for p in heads[k].parameters()]
        if not strat.supermask:
            return [p for p in modules["backbone"].parameters() if p.requires_grad] + head
        # supermasks: the scores (edge-popup's large step: only their order matters) and the fresh head learn
        # faster than the exclusive weights of exssnet's second phase
        scores = {id(m.scores[self.i]) for m in self.run.masks.values()}
        out = [(p, strat.score_lr_scale if id(p) in scores else 1.0)
               for p in modules["backbone"].parameters() if p.requires_grad]
        return out + [(p, strat.head_lr_scale) for p in head]

    def step(self, batch: Any, modules: Any, ctx: StepContext) -> tuple[Any, dict[str, Any]]:
        self.run.set_task(self.i)
        cur = batch["current"]
        f = modules["backbone"](cur["x"])
        loss = self.run.task_loss(modules, f, cur["y"], cur["task"], self.i)
        logs: dict[str, Any] = {"task_loss": loss.detach()}
        extra, more = self.run.strategy.extra_loss(self.run, self.i, {**cur, **{k: v for k, v in batch.items()
                                                                                if k != "current"}}, f, modules)
        if extra is not None:
            loss = loss + extra
            logs.update(more)
        return loss, logs

    def config(self) -> dict[str, Any]:
        return {"strategy": self.name, "task": self.i, "phase": self.phase, **self.options}
