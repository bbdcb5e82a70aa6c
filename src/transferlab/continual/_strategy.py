"""The hooks of a continual strategy: an objective whose state carries across tasks. The runner calls them in this
order and never asks which strategy it runs; every hook has a default that does nothing special.

- ``check(stream, name)``: refuse a stream the strategy cannot run on, before any work;
- ``install(run)``: once, after the model is built and before anything is measured (e.g. the supermasks);
- ``steps(n_tasks)``: the tasks after which the model trains and the accuracy matrix gets a row (``joint``: the last);
- per step ``i``: ``before_task(run, i)``; ``task_data(run, i)`` (the named streams the step trains on: ``current``,
  and e.g. the replay buffer); ``train_task(run, i, data, training)`` (one or several calls of ``training``, the one
  loop); ``after_task(run, i)``;
- inside training: ``trainable(run, i, modules)`` (parameters, or (parameter, learning-rate scale) pairs),
  ``extra_loss(run, i, batch, features, modules)``, ``after_step(run, i, modules)`` (after each optimiser step: e.g.
  GPM's projection of the update); ``update_norm_stats`` passes to the loop;
- at prediction: ``use_task(run, j)`` before the network sees task ``j``'s examples (a strategy that keeps a network
  per task selects it here); ``eval_features(run, j, compute)``: task ``j``'s test features, ``compute()`` by default
  (a strategy whose features of a task cannot change any more may keep them);
- at the end: ``summary(matrix, before, kind)`` (the metrics of the accuracy matrix), ``metrics(run)`` (its own
  measures), ``export_tasks_(net, n_tasks)`` (the state each task's saved head file carries beside the head; it may
  turn the saved copy of the backbone into task 0's network, in place)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._metrics import summary
from ._streams import Stream


class Strategy:
    update_norm_stats = False  # True: training updates every batch-norm's statistics, frozen or not

    def config(self) -> dict[str, Any]:
        return {}

    def check(self, stream: Stream, name: str) -> None:
        pass

    def install(self, run: Any) -> None:
        pass

    def steps(self, n_tasks: int) -> list[int]:
        return list(range(n_tasks))

    def before_task(self, run: Any, i: int) -> None:
        pass

    def task_data(self, run: Any, i: int) -> dict[str, Any]:
        return {"current": run.task_tensors(i)}

    def train_task(self, run: Any, i: int, data: dict[str, Any], training: Any) -> list[dict[str, Any]]:
        return training(run, i, data)

    def trainable(self, run: Any, i: int, modules: Any) -> list[Any]:
        """The backbone's trainable parameters and the heads of the tasks so far (the one head of a class-
        incremental stream)."""
        heads = modules["heads"]
        keys = list(heads.keys()) if run.stream.kind == "class" else [str(k) for k in range(i + 1)]
        head = [p for k in keys for p in heads[k].parameters()]
        return [p for p in modules["backbone"].parameters() if p.requires_grad] + head

    def extra_loss(self, run: Any, i: int, batch: Any, features: Any, modules: Any) -> tuple[Any, dict[str, Any]]:
        return None, {}

    def after_step(self, run: Any, i: int, modules: Any) -> None:
        pass

    def after_task(self, run: Any, i: int) -> None:
        pass

    def use_task(self, run: Any, j: int) -> None:
        pass

    def eval_features(self, run: Any, j: int, compute: Any) -> tuple[Any, Any]:
        return compute()

    def summary(self, matrix: np.ndarray, before: list[float], kind: str) -> dict[str, Any]:
        return summary(matrix, np.asarray(before) if kind == "task" else None)

    def metrics(self, run: Any) -> dict[str, Any]:
        """Its own measures; the schema: the bits a task adds beside its head, the bytes kept per class (a
        prototype, a statistic, buffered examples) and the bytes kept for every class together (a Gram matrix, bases,
        masks, a penalty's anchors), beside the network and its heads."""
        return {"mask_bits_per_task": 0, "bytes_per_class": 0, "shared_bytes": 0}

    def export_tasks_(self, net: Any, n_tasks: int) -> list[dict[str, Any]]:
        return [{} for _ in range(n_tasks)]
