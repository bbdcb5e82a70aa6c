"""One continual run: the shared backbone, one head per task (task-incremental) or one growing head
(class-incremental), the data of each task with its task id, the per-task training on the one loop, and the
accuracy matrix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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

    def set_task(self, j: int) -> None:
        """Task ``j``'s network from here on (the strategy's ``use_task``: e.g. the supermasks pick its mask)."""
        self.strategy.use_task(self, j)

    # ---------------------------------------------------------------------------------------------------- data
    def task_tensors(self, i: int, augment: bool = True) -> TaskTensors:
        return TaskTensors(self, [(i, j) for j in range(len(self.stream.tasks[i].train))], augment)

    def tasks_tensors(self, tasks: list[int], augment: bool = True) -> TaskTensors:
        """Every example of ``tasks`` at once (joint)."""
        return TaskTensors(self, [(t, j) for t in tasks for j in range(len(self.stream.tasks[t].train))], augment)

    def examples(self, pairs: list[tuple[int, int]], augment: bool = True) -> TaskTensors:
        """The (task, index) examples ``pairs``."""
        return TaskTensors(self, list(pairs), augment)

    def buffer_tensors(self, buffer: list[tuple[int, int]]) -> TaskTensors:
        return self.examples(buffer, augment=True)

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

    def test_features(self, j: int, batch_size: int = 64) -> tuple[Any, Any]:
        """Task ``j``'s test examples through the backbone as it is now (eval mode): (features, labels)."""
        import torch

        net, dev = self.modules["backbone"], self.device()
        net.eval()
        feats, labels = [], []
        with torch.inference_mode():
            for x, y in torch.utils.data.DataLoader(self.built.tensors(self.stream.tasks[j].test),
                                                    batch_size=batch_size):
                feats.append(net(x.to(dev)))
                labels.append(y)
        return torch.cat(feats), torch.cat(labels)

    def accuracy(self, j: int, upto: int, batch_size: int = 64) -> float:
        """Accuracy on task ``j``'s test split after training up to task ``upto`` (class-incremental: among the
        classes seen so far; a task whose classes are not seen yet scores 0). The features come through the
        strategy's ``eval_features`` (one that knows they cannot have changed may keep them)."""
        import torch

        mods = self.modules
        for m in mods.values():
            m.eval()
        self.set_task(j)
        f, y = self.strategy.eval_features(self, j, lambda: self.test_features(j, batch_size))
        with torch.inference_mode():
            z = self.logits(mods, f.to(self.device()), j, upto)
        return int((z.argmax(1).cpu() == y).sum()) / max(len(y), 1)

    @contextmanager
    def swapped(self, name: str, module: Any) -> Iterator[None]:
        """``modules[name]`` is ``module`` inside the block (a temporary head that trains on the one loop)."""
        old = self.modules[name]
        self.modules[name] = module
        try:
            yield
        finally:
            self.modules[name] = old


def _feature_dim(backbone: Any, built: Any) -> int:
    import torch

    from ..models import pooled_dim

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
    plus the strategy's term; the strategy says what trains."""

    def __init__(self, run: Run, i: int, strategy_name: str, options: dict[str, Any], phase: str = "") -> None:
        self.run, self.i, self.name, self.options, self.phase = run, i, strategy_name, dict(options), phase
        self.update_norm_stats = bool(run.strategy.update_norm_stats)

    def trainable(self, modules: Any) -> list[Any]:
        return self.run.strategy.trainable(self.run, self.i, modules)

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

    def after_step(self, modules: Any, ctx: StepContext) -> None:
        self.run.strategy.after_step(self.run, self.i, modules)

    def config(self) -> dict[str, Any]:
        return {"strategy": self.name, "task": self.i, "phase": self.phase, **self.options}


@dataclass(frozen=True)
class Training:
    """One call of the one training loop on a task's data: what a strategy's ``train_task`` calls (once, or once
    per phase with its own ``TrainConfig`` fields, ``epochs`` included)."""

    name: str
    options: dict[str, Any]
    epochs: int
    lr: float
    batch_size: int
    seed: int
    progress: bool

    def __call__(self, run: Run, i: int, data: dict[str, Any], phase: str = "", **config: Any) -> list[dict[str, Any]]:
        from ..train import TrainConfig, train

        cfg = TrainConfig(**{"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size, "seed": self.seed + i,
                             **config})
        objective = ContinualObjective(run, i, self.name, self.options, phase)
        return train(dict(run.modules), objective, data, cfg, progress=self.progress).history
