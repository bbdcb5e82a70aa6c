"""The continual strategies: what each adds to training on the current task, and what it keeps between tasks.

A strategy is ``factory(**options) -> Strategy``; register one with ``@STRATEGIES.register(name, summary=...,
paper=...)``. Its hooks (``_strategy.Strategy``): e.g. ``before_task`` (LwF's frozen copy), ``task_data`` (joint's
every task, the replay buffer), ``extra_loss``, ``after_task`` (EWC's Fisher, the buffer's update), and for the
supermasks (``_supermasks``) ``install``, ``train_task``, ``use_task`` and ``export_tasks_``."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._registry import Registry
from ..errors import TransferlabError
from ._strategy import Strategy
from ._streams import Stream
from ._supermasks import Supermasks

#: the modules beside this one that register strategies (closed-form heads: ``_closed_form``; gradient projection:
#: ``_gpm``; per-task adapters: ``_ease``)
STRATEGIES: Registry[Callable[..., Strategy]] = Registry("continual strategy",
                                                         modules=("transferlab.continual._closed_form",
                                                                  "transferlab.continual._gpm",
                                                                  "transferlab.continual._ease"))
__all__ = ["STRATEGIES", "Strategy", "Supermasks"]


@STRATEGIES.register("naive", summary="fine-tune on each task in turn (the lower bound: it forgets)")
def naive() -> Strategy:
    return Strategy()


class _Joint(Strategy):
    """One step, after the last task, on every task's examples at once; one row, so no BWT or FWT."""

    def steps(self, n_tasks: int) -> list[int]:
        return [n_tasks - 1]

    def task_data(self, run: Any, i: int) -> dict[str, Any]:
        return {"current": run.tasks_tensors(list(range(i + 1)))}

    def summary(self, matrix: np.ndarray, before: list[float], kind: str) -> dict[str, Any]:
        return {"acc": float(matrix[-1].mean()), "bwt": None, "fwt": None, "forgetting": [], "mean_forgetting": None,
                "exssnet_bwt": None}


@STRATEGIES.register("joint", summary="every task at once (the upper bound; no sequence, so no BWT or FWT)")
def joint() -> Strategy:
    return _Joint()


class Replay(Strategy):
    def __init__(self, buffer_size: int, replay_weight: float, seed: int = 0) -> None:
        self.size, self.weight = buffer_size, replay_weight
        self.buffer: list[tuple[int, int]] = []  # (task, example index)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def config(self) -> dict[str, Any]:
        return {"buffer_size": self.size, "replay_weight": self.weight}

    def check(self, stream: Stream, name: str) -> None:
        total = sum(len(t.train) for t in stream.tasks[:-1])
        if self.size > total:
            raise TransferlabError(f"the replay buffer ({self.size}) is larger than the data it could ever hold "
                                   f"({total} training examples before the last task): lower buffer_size")

    def install(self, run: Any) -> None:
        self.rng = np.random.default_rng(run.seed)

    def task_data(self, run: Any, i: int) -> dict[str, Any]:
        data = super().task_data(run, i)
        if self.buffer:
            data["replay"] = run.buffer_tensors(self.buffer)
        return data

    def extra_loss(self, run: Any, i: int, batch: Any, features: Any, modules: Any) -> tuple[Any, dict[str, Any]]:
        if "replay" not in batch:
            return None, {}
        rb = batch["replay"]
        f = modules["backbone"](rb["x"])
        loss = run.task_loss(modules, f, rb["y"], rb["task"], i)
        return self.weight * loss, {"replay_loss": loss.detach()}

    def metrics(self, run: Any) -> dict[str, Any]:
        """The buffer's examples as stored (an image array's bytes, a text's UTF-8 bytes), per class of the stream."""
        total = sum(_item_bytes(run.stream.tasks[t].train.items[j]) for t, j in self.buffer)
        return {**super().metrics(run), "bytes_per_class": int(round(total / _n_classes(run.stream)))}

    def after_task(self, run: Any, i: int) -> None:
        """Reservoir sampling (Vitter's algorithm R) over every training example seen so far."""
        for j in range(len(run.stream.tasks[i].train)):
            self.seen += 1
            if len(self.buffer) < self.size:
                self.buffer.append((i, j))
            else:
                k = int(self.rng.integers(0, self.seen))
                if k < self.size:
                    self.buffer[k] = (i, j)


def _item_bytes(item: Any) -> int:
    if isinstance(item, np.ndarray):
        return int(item.nbytes)
    if isinstance(item, str):
        return len(item.encode())
    try:
        import os

        return int(os.path.getsize(item))  # an image file
    except (OSError, TypeError):
        return 0


def _n_classes(stream: Stream) -> int:
    return max(1, len(stream.class_names) if stream.kind == "class" else sum(len(t.classes) for t in stream.tasks))


@STRATEGIES.register("replay", summary="a reservoir buffer of earlier examples replayed beside each batch",
                     paper="Chaudhry et al., On Tiny Episodic Memories in Continual Learning, 2019")
def replay(buffer_size: int = 200, replay_weight: float = 1.0) -> Strategy:
    """``buffer_size`` examples kept by reservoir sampling over the stream; each step adds the cross-entropy of a
    buffer batch (the same size as the task's), times ``replay_weight``."""
    if buffer_size < 1:
        raise TransferlabError(f"buffer_size must be >= 1, got {buffer_size}")
    if not (math.isfinite(replay_weight) and replay_weight > 0):
        raise TransferlabError(f"replay_weight must be a finite number > 0, got {replay_weight}")
    return Replay(buffer_size, replay_weight)


class EWC(Strategy):
    def __init__(self, lam: float, mode: str, decay: float) -> None:
        self.lam, self.mode, self.decay = lam, mode, decay
        self.terms: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (Fisher, anchor) per task, or one (online)

    def config(self) -> dict[str, Any]:
        return {"ewc_lambda": self.lam, "mode": self.mode, "decay": self.decay}

    def extra_loss(self, run: Any, i: int, batch: Any, features: Any, modules: Any) -> tuple[Any, dict[str, Any]]:
        if not self.terms:
            return None, {}
        params = dict(run.shared_parameters(modules))
        pen = None
        for fisher, anchor in self.terms:
            for n, f in fisher.items():
                p = params[n]
                t = (f * (p - anchor[n]) ** 2).sum()
                pen = t if pen is None else pen + t
        return self.lam * pen, {"ewc_penalty": pen.detach()}

    def after_task(self, run: Any, i: int) -> None:
        if i == len(run.stream.tasks) - 1:
            return  # no later task to protect it from
        fisher = run.empirical_fisher(i)
        anchor = {n: p.detach().clone() for n, p in run.shared_parameters(run.modules)}
        if self.mode == "online" and self.terms:
            old, _ = self.terms[0]
            fisher = {n: self.decay * old[n] + f for n, f in fisher.items()}
            self.terms = [(fisher, anchor)]
        else:
            self.terms.append((fisher, anchor))

    def metrics(self, run: Any) -> dict[str, Any]:  # each term's Fisher and anchor
        return {**super().metrics(run), "shared_bytes": int(sum(t.element_size() * t.numel() for f, a in self.terms
                                                                for d in (f, a) for t in d.values()))}


@STRATEGIES.register("ewc", summary="elastic weight consolidation: a quadratic penalty on moving weights the earlier "
                     "tasks needed", paper="Kirkpatrick et al., PNAS 2017; online: Schwarz et al., ICML 2018",
                     reference="ContinualAI/avalanche EWCPlugin (penalty without 1/2, empirical Fisher)")
def ewc(ewc_lambda: float = 100.0, mode: str = "separate", decay: float = 1.0) -> Strategy:
    """λ·Σ_t Σ_p F_t,p (θ_p − θ*_t,p)² over the shared parameters (no ½, as Avalanche), F the empirical Fisher: the
    mean over the task's mini-batches of the squared gradient of the batch's mean cross-entropy. ``mode``:
    ``separate`` (one term per task) or ``online`` (one term, F ← ``decay``·F + F_new, θ* the latest)."""
    if mode not in ("separate", "online"):
        raise TransferlabError(f"ewc mode must be 'separate' or 'online', got {mode!r}")
    if not (math.isfinite(ewc_lambda) and ewc_lambda >= 0):
        raise TransferlabError(f"ewc_lambda must be a finite number >= 0, got {ewc_lambda}")
    if not 0 <= decay <= 1:
        raise TransferlabError(f"decay must lie in [0, 1], got {decay}")
    return EWC(ewc_lambda, mode, decay)


class LwF(Strategy):
    def __init__(self, alpha: float, temperature: float) -> None:
        self.alpha, self.t = alpha, temperature

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "temperature": self.t}

    def before_task(self, run: Any, i: int) -> None:
        """A frozen copy of the backbone and heads: the teacher for the earlier tasks."""
        if i == 0:
            return
        for name in ("backbone", "heads"):
            old = copy.deepcopy(run.modules[name]).eval()
            for p in old.parameters():
                p.requires_grad_(False)
            run.modules[f"old_{name}"] = old

    def metrics(self, run: Any) -> dict[str, Any]:  # the frozen copy of the backbone and heads, during a task
        return {**super().metrics(run), "shared_bytes": int(sum(p.element_size() * p.numel() for n in ("backbone",
                                                                "heads") for p in run.modules[n].parameters()))}

    def after_task(self, run: Any, i: int) -> None:
        if i == len(run.stream.tasks) - 1:  # the frozen copy served its purpose
            for k in [k for k in run.modules if k.startswith("old_")]:
                del run.modules[k]

    def extra_loss(self, run: Any, i: int, batch: Any, features: Any, modules: Any) -> tuple[Any, dict[str, Any]]:
        if i == 0 or "old_backbone" not in modules:
            return None, {}
        import torch

        x = batch["x"]
        with torch.no_grad():
            f_old = modules["old_backbone"](x)
        terms = []
        for new, old in _old_outputs(run, modules, features, f_old, i):
            log_q = torch.log_softmax(new.float() / self.t, 1)
            p = torch.softmax(old.float() / self.t, 1)
            terms.append(torch.nn.functional.kl_div(log_q, p, reduction="batchmean"))
        kl = torch.stack(terms).mean()
        return self.alpha * kl, {"lwf_kl": kl.detach()}


def _old_outputs(run: Any, modules: Any, f_new: Any, f_old: Any, i: int) -> Iterator[tuple[Any, Any]]:
    """(current, frozen) logits of the earlier tasks: their heads (task-incremental), or the earlier classes of the
    one head (class-incremental)."""
    if run.stream.kind == "task":
        for k in range(i):
            yield modules["heads"][str(k)](f_new), modules["old_heads"][str(k)](f_old)
    else:
        old = run.seen_classes(i - 1)
        yield modules["heads"]["0"](f_new)[:, old], modules["old_heads"]["0"](f_old)[:, old]


@STRATEGIES.register("lwf", summary="learning without forgetting: distil the frozen previous model's outputs on the "
                     "earlier heads from the current task's inputs", paper="Li & Hoiem, ECCV 2016",
                     reference="ContinualAI/avalanche LwFPlugin (KL without the T² factor)")
def lwf(alpha: float = 1.0, temperature: float = 2.0) -> Strategy:
    """α · mean over earlier tasks of KL(softmax(z_old/T) ‖ softmax(z_new/T)) on the current task's inputs (no T²,
    as Avalanche); class-incremental streams distil the earlier classes' logits."""
    if not (math.isfinite(alpha) and alpha >= 0):
        raise TransferlabError(f"alpha must be a finite number >= 0, got {alpha}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise TransferlabError(f"temperature must be a finite number > 0, got {temperature}")
    return LwF(alpha, temperature)


def _scales(**scales: float) -> None:
    for name, v in scales.items():
        if not (math.isfinite(v) and v > 0):
            raise TransferlabError(f"{name} must be a finite number > 0, got {v}")


def _density(density: float) -> None:
    if not (math.isfinite(density) and 0 < density <= 1):
        raise TransferlabError(f"density must lie in (0, 1], got {density}")


@STRATEGIES.register("supsup", summary="one learned supermask per task over fixed weights (edge-popup scores, "
                     "straight-through top-k): earlier tasks never change", paper="Wortsman et al., Supermasks in "
                     "Superposition, NeurIPS 2020")
def supsup(density: float = 0.1, score_lr_scale: float = 10.0, head_lr_scale: float = 10.0) -> Strategy:
    """Per task, scores S_t over every convolution and linear weight; the task's network is W ⊙ top-k(|S_t|) with
    ``density`` of the entries kept; W (the pretrained weights) and everything else stay fixed; each task keeps its
    own batch-norm statistics. The scores and the task's fresh head learn at ``score_lr_scale`` and
    ``head_lr_scale`` times the learning rate (a mask is learnt from scratch; the references train scores with
    SGD at 0.1)."""
    _density(density)
    _scales(score_lr_scale=score_lr_scale, head_lr_scale=head_lr_scale)
    return Supermasks(density, False, False, score_lr_scale, head_lr_scale)


@STRATEGIES.register("exssnet", summary="supermasks, and the weights no earlier task's mask uses are trained too "
                     "(exclusive updates)", paper="Yadav & Bansal, Exclusive Supermask Subnetwork Training for "
                     "Continual Learning, ACL Findings 2023", reference="prateeky2806/exessnet @ 1e768f8")
def exssnet(density: float = 0.1, knn_transfer: bool = False, score_lr_scale: float = 10.0,
            head_lr_scale: float = 10.0) -> Strategy:
    """SupSup's masks (first phase: the scores), then a second phase with the mask fixed that trains the weights in
    M_t ∧ ¬(M_1 ∨ … ∨ M_{t−1}). ``knn_transfer``: start a task's scores from the earlier task whose masked network's
    features give the best 1-nearest-neighbour accuracy on the new task's training examples, if that beats chance
    (off by default, as in the reference). The learning-rate scales as in ``supsup``; the exclusive weights train
    at the learning rate itself."""
    _density(density)
    _scales(score_lr_scale=score_lr_scale, head_lr_scale=head_lr_scale)
    return Supermasks(density, True, knn_transfer, score_lr_scale, head_lr_scale)
