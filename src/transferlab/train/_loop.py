"""The one training loop.

AdamW with linear warm-up and cosine decay, gradient accumulation, gradient clipping, mixed precision (bf16 on
any device, fp16 with gradient scaling on CUDA), data-parallel training on several processes (``torchrun`` or
``devices=N``: each global batch cut across the processes, gradients averaged, rank 0 checkpointing; see
:mod:`._distributed`), selection of the best epoch by the objective's ``select`` value (the best weights are restored) with optional early
stopping, a checkpoint after every epoch and exact resume after a kill: an interrupted run resumed from its
checkpoint directory ends with the same weights as an uninterrupted run with the same seed, because each epoch's
shuffling comes from ``seed + epoch`` and the checkpoint carries every random generator's state. What the loss is
comes from an :class:`~transferlab.train.Objective`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._progress import progress as progress_bars
from ..errors import TransferlabError
from ._config import TrainConfig, TrainResult
from ._data import Part, batch_size_of, epoch_batches, epoch_generator, loader, num_batches, to_device
from ._distributed import (
    World,
    all_gather_object,
    average_gradients_,
    broadcast_object,
    broadcast_tensors_,
    init,
    process_device,
    split,
)
from ._log import EpochLog
from ._objective import Objective, StepContext
from ._state import read_checkpoint, resume, rng_state, save_checkpoint, seed_everything


def warmup_cosine(total_steps: int, warmup: float, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up over ``warmup * total_steps`` steps, then cosine to ``min_ratio``."""
    w = int(round(warmup * total_steps))

    def f(step: int) -> float:
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, total_steps - w))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


class _Summary:
    """Epoch means of logged values: floats weighted by batch size, ``(total, count)`` pairs summed exactly."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, logs: Mapping[str, Any], n: int) -> None:
        for k, v in logs.items():
            if isinstance(v, tuple):
                total, count = float(v[0]), float(v[1])
            else:
                total, count = float(v) * n, float(n)
            self.sums[k] = self.sums.get(k, 0.0) + total
            self.counts[k] = self.counts.get(k, 0.0) + count

    def means(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": self.sums[k] / max(self.counts[k], 1e-300) for k in self.sums}

    def gathered(self, w: World) -> _Summary:
        """The sums and counts of every process of a distributed run, added in rank order (the same on each)."""
        if not w.distributed:
            return self
        out = _Summary()
        for sums, counts in all_gather_object((self.sums, self.counts)):
            for k in sums:
                out.sums[k] = out.sums.get(k, 0.0) + sums[k]
                out.counts[k] = out.counts.get(k, 0.0) + counts[k]
        return out


def evaluate(objective: Objective, modules: Mapping[str, Any], data: Any, batch_size: int, num_workers: int = 0,
             device: Any = None) -> dict[str, float]:
    """The objective's validation values on ``data`` (modules in eval mode, no gradients), averaged over examples."""
    return _evaluate(objective, modules, data, batch_size, num_workers, device).means("")


def _evaluate(objective: Objective, modules: Mapping[str, Any], data: Any, batch_size: int, num_workers: int,
              device: Any, w: World | None = None) -> _Summary:
    """:func:`evaluate`'s sums; in a distributed run (``w``) each process evaluates its contiguous part of ``data``
    and the sums are added across processes."""
    import torch

    for m in modules.values():
        m.eval()
    if w is not None and w.distributed:
        data = Part(data, *split(len(data), w.rank, w.size))
    summary = _Summary()
    with torch.inference_mode():
        for batch in loader(data, batch_size, num_workers):
            batch = to_device(batch, device) if device is not None else batch
            summary.add(objective.evaluate(batch, modules), batch_size_of(batch))
    return summary.gathered(w) if w is not None else summary


def train(modules: Mapping[str, Any] | Any, objective: Objective, data: Any, config: TrainConfig | None = None, *,
          val_data: Any = None, checkpoint_dir: str | Path | None = None, progress: bool = False,
          device: str | None = None) -> TrainResult:
    """Train ``modules`` (named ``nn.Module``s, or one module, named ``model``) in place with ``objective`` on
    ``data`` (a map-style dataset of ``(x, y)`` or dict examples, or ``{"stream": dataset, ...}`` paired streams).

    Every module moves to the device; modules with a trainable parameter train (batch norms per the objective's
    ``freeze_norm_stats``), the others stay in eval mode. ``val_data``: evaluated by ``objective.evaluate`` after each
    epoch. ``checkpoint_dir``: a checkpoint after each epoch, resumed when present (the directory must come from
    the same config and objective, else an error). Returns the per-epoch history and the selected epoch; the modules
    are left in eval mode with the selected epoch's weights.

    Under ``torchrun`` (or a capability's ``devices=N``) this is one process of a data-parallel run: on CUDA it
    trains on ``cuda:LOCAL_RANK``; each global batch of ``config.batch_size`` examples is cut into contiguous shares
    (``batch_size // world`` examples, the first ``batch_size % world`` processes one more), each process's loss
    weighted by its share so that the averaged gradient is the one of the whole batch, as in one process (for a loss
    that is a mean over its batch); validation is cut likewise and its sums added; every process takes rank 0's
    epoch row, selection and stopping decision; rank 0 alone reads and writes ``checkpoint_dir`` (a checkpoint
    resumes on any number of processes). Batch norms normalise by each process's share, and their running
    statistics are rank 0's (as in DDP).
    """
    from .._runtime import controls

    cfg = config or TrainConfig()
    if cfg.num_workers == 0 and controls().get("num_workers"):  # --num-workers (not part of the fingerprint)
        cfg = cfg.model_copy(update={"num_workers": int(controls()["num_workers"])})
    mods = dict(modules) if isinstance(modules, Mapping) else {"model": modules}
    dev = process_device(device)
    w = init(dev)
    seed_everything(cfg.seed)
    for m in mods.values():
        m.to(dev)
    objective.setup(mods, dev)
    loop = _Loop(cfg, objective, mods, dev, data, w)
    loop.log = EpochLog(controls().get("log_dir")) if w.main else EpochLog(None)
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckdir is not None:
        found = broadcast_object(read_checkpoint(ckdir) if w.main else None)  # rank 0 reads, every process loads
        if found is not None:
            loop.resume(ckdir, found)
    if w.distributed:  # every process starts from rank 0's modules (DDP does the same)
        broadcast_tensors_([t for m in mods.values() for t in (*m.parameters(), *m.buffers())])
    has_val = val_data is not None and len(val_data) > 0
    with progress_bars(progress and w.main) as bars:
        for epoch in range(loop.start_epoch, cfg.epochs):
            if loop.epoch(epoch, data, val_data if has_val else None, bars, ckdir):
                break
    return loop.finish()


class _Loop:
    """One training run's state: the trainable parameters and their learning-rate scales, the optimiser, schedule
    and gradient scaler, the result so far and the best epoch's weights."""

    log: EpochLog = EpochLog(None)  # --log-dir: set by train()

    def __init__(self, cfg: TrainConfig, objective: Objective, mods: dict[str, Any], dev: Any, data: Any,
                 w: World | None = None) -> None:
        import torch

        self.cfg, self.objective, self.mods, self.dev, self.world = cfg, objective, mods, dev, w or World()
        self.precision = resolve_precision(cfg, dev)
        self.use_amp = self.precision != "fp32"
        self.amp_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        scales: dict[int, float] = {}
        self.trainable = []
        for item in objective.trainable(mods):
            p, s = item if isinstance(item, tuple) else (item, 1.0)
            if p.requires_grad and id(p) not in scales:
                scales[id(p)] = float(s)
                self.trainable.append(p)
        if not self.trainable:
            raise TransferlabError("nothing to train: no parameter requires a gradient")
        ids = set(scales)
        self.training = {n for n, m in mods.items() if any(id(p) in ids for p in m.parameters())}
        self.n_batches = num_batches(data, cfg.batch_size)
        self.steps_per_epoch = math.ceil(self.n_batches / cfg.grad_accum)
        total_steps = self.steps_per_epoch * cfg.epochs
        groups: dict[float, list[Any]] = {}
        for p in self.trainable:
            groups.setdefault(scales[id(p)], []).append(p)
        self.opt = torch.optim.AdamW([{"params": ps, "lr": cfg.lr * s} for s, ps in groups.items()], lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, warmup_cosine(total_steps, cfg.warmup,
                                                                               cfg.min_lr_ratio))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")  # bf16 needs no scaling
        self.result = TrainResult()
        self.start_epoch = 0
        self.best_state: dict[str, Any] | None = None
        self.bad_epochs = 0
        self.t0 = time.perf_counter()

    def resume(self, ckdir: Path, files: tuple[str, bytes]) -> None:
        """Continue after the last finished epoch of the checkpoint in ``ckdir`` (its ``files``, as rank 0 read
        them)."""
        r = self.result
        self.start_epoch, self.best_state = resume(ckdir, self.cfg, self.objective, self.mods, self.opt, self.sched,
                                                   self.scaler, r, files, self.world.rank, self.world.size)
        r.resumed_from_epoch = self.start_epoch
        self.bad_epochs = 0 if r.best_epoch is None else r.epochs_run - r.best_epoch
        self.t0 = time.perf_counter() - r.train_seconds

    def epoch(self, epoch: int, data: Any, val_data: Any, bars: Any, ckdir: Path | None) -> bool:
        """Train one epoch, validate, score, select, checkpoint; whether training stops here."""
        cfg, r = self.cfg, self.result
        _set_modes(self.mods, self.training, self.objective.freeze_norm_stats, self.objective.update_norm_stats)
        task = bars.add(f"epoch {epoch + 1}/{cfg.epochs}", self.n_batches + int(val_data is not None))
        ctx_gen = epoch_generator(cfg.seed, epoch, stream=-1)
        summary = self._batches(epoch, data, ctx_gen, bars, task)
        if self.world.distributed:  # batch-norm statistics: rank 0's, as DDP's broadcast_buffers keeps them
            broadcast_tensors_([b for n in sorted(self.training) for b in self.mods[n].buffers()])
        row = {"epoch": epoch + 1, **summary.means("train_"), "lr": float(self.sched.get_last_lr()[0])}
        if val_data is not None:
            row.update({f"val_{k}": v for k, v in _evaluate(self.objective, self.mods, val_data, cfg.batch_size,
                                                             cfg.num_workers, self.dev, self.world).means("").items()})
            if bars.enabled:  # the bar ends with the validation metrics
                bars.advance(task, note=_note(summary.means("")) + "  val " + " ".join(
                    f"{k[4:].replace('accuracy', 'acc')} {v:.4f}" for k, v in row.items()
                    if k.startswith("val_") and isinstance(v, float)))
        # set-level scores (label-free selection), before selecting; in a forked RNG: whatever they draw (a data
        # loader's base seed, a sample) leaves training's random streams as they would be without them
        import torch

        with torch.random.fork_rng(devices=[self.dev.index or 0] if self.dev.type == "cuda" else []):
            scores = self.objective.epoch_scores(self.mods, self.dev)
        if scores:
            row.update(scores)
        # one decision for every process: rank 0's row (scores, wall time)
        row, r.train_seconds = broadcast_object((row, time.perf_counter() - self.t0))
        improved = self._select(row, epoch)
        self.objective.end_epoch(self.mods, _context(cfg, epoch, self.n_batches, self.n_batches,
                                                     self.steps_per_epoch, self.dev, ctx_gen, self.use_amp), row)
        r.history.append(row)
        self.log.write(row)
        r.epochs_run = epoch + 1
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        stop = cfg.patience is not None and r.best_epoch is not None and self.bad_epochs >= cfg.patience
        over_budget = cfg.budget_seconds is not None and r.train_seconds > cfg.budget_seconds
        r.stopped_early = (stop or over_budget) and epoch + 1 < cfg.epochs  # not when the last epoch ends it
        if ckdir is not None:
            rngs = all_gather_object(rng_state()) if self.world.distributed else None
            if self.world.main:
                save_checkpoint(ckdir, cfg, self.objective, self.mods, self.opt, self.sched, self.scaler, r,
                                epoch + 1, self.best_state, rngs)
        return stop or over_budget

    def _batches(self, epoch: int, data: Any, ctx_gen: Any, bars: Any, task: Any) -> _Summary:
        """One pass over ``data``: a step per batch, an optimiser step every ``grad_accum`` batches."""
        import torch

        cfg, opt, dev, w = self.cfg, self.opt, self.dev, self.world
        summary = _Summary()
        opt.zero_grad(set_to_none=True)
        shard = (w.rank, w.size) if w.distributed else None
        for i, (batch, share) in enumerate(epoch_batches(data, cfg.batch_size, cfg.num_workers, cfg.seed, epoch,
                                                         shard)):
            batch = to_device(batch, dev)
            ctx = _context(cfg, epoch, i, self.n_batches, self.steps_per_epoch, dev, ctx_gen, self.use_amp)
            with torch.autocast(device_type=dev.type, dtype=self.amp_dtype, enabled=self.use_amp):
                step_loss, logs = self.objective.step(batch, self.mods, ctx)
            if not torch.isfinite(step_loss):
                raise TransferlabError(
                    f"training diverged: the loss became {float(step_loss.detach())} in epoch {epoch + 1}; lower "
                    "--lr" + (f" or train in full precision (--precision fp32; {self.precision} mixed precision was "
                              "on)" if self.use_amp else ""))
            if share is None:
                self.scaler.scale(step_loss / cfg.grad_accum).backward()
            else:  # this process's share of the batch's mean: the average over processes is the batch's mean
                self.scaler.scale(step_loss * (share[0] * w.size / share[1]) / cfg.grad_accum).backward()
            if (i + 1) % cfg.grad_accum == 0 or i + 1 == self.n_batches:
                if w.distributed:
                    average_gradients_(self.trainable)
                if cfg.clip_grad_norm is not None:
                    self.scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(self.trainable, cfg.clip_grad_norm)
                self.scaler.step(opt)
                self.scaler.update()
                self.sched.step()
                self.objective.after_step(self.mods, ctx)
                opt.zero_grad(set_to_none=True)
            if share is None or share[0]:  # not a stand-in example of an empty share
                summary.add({"loss": step_loss.detach(), **logs}, batch_size_of(batch))
            if bars.enabled:
                bars.advance(task, note=_note(summary.means("")))
        return summary.gathered(w)

    def _select(self, row: dict[str, Any], epoch: int) -> bool:
        """Whether this epoch is the best so far by the objective's ``select`` value (its weights are then kept)."""
        select_key, higher = self.objective.select
        r = self.result
        if select_key not in row:
            return False
        v = float(row[select_key])
        if r.best_value is not None and not (v > r.best_value if higher else v < r.best_value):
            return False
        r.best_value, r.best_epoch, r.selected_by = v, epoch + 1, select_key
        self.best_state = {n: {k: t.detach().clone() for k, t in self.mods[n].state_dict().items()}
                           for n in sorted(self.training)}
        return True

    def finish(self) -> TrainResult:
        """The selected epoch's weights restored, every module in eval mode."""
        if self.best_state is not None:
            for n, st in self.best_state.items():
                self.mods[n].load_state_dict(st)
        for m in self.mods.values():
            m.eval()
        return self.result


def resolve_precision(cfg: TrainConfig, dev: Any) -> str:
    """``cfg.precision``; else the one a runtime asked for (``precision=`` of a capability,
    :mod:`transferlab._runtime`); else by ``cfg.amp``: fp16 on CUDA, fp32 elsewhere (what the loop always did). fp16
    needs CUDA (gradient scaling; torch's fp16 autocast on the CPU is slower than fp32); bf16 needs a GPU that has
    it."""
    import torch

    from .._runtime import requested_precision

    p = cfg.precision or requested_precision()  # an explicit fp32 turns CUDA's default fp16 off
    p = p or ("fp16" if cfg.amp and dev.type == "cuda" else "fp32")
    if p == "fp16" and dev.type != "cuda":
        raise TransferlabError(f"precision fp16 trains on CUDA GPUs only (this run is on {dev.type}): use bf16 or "
                               "fp32")
    if p == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TransferlabError(f"precision bf16: {torch.cuda.get_device_name(dev)} has no bfloat16; use fp16 or fp32")
    return p


def _context(cfg: TrainConfig, epoch: int, i: int, n_batches: int, steps_per_epoch: int, dev: Any, gen: Any,
             amp: bool) -> StepContext:
    done = epoch * n_batches + i
    return StepContext(epoch=epoch, epochs=cfg.epochs, step=epoch * steps_per_epoch + i // cfg.grad_accum, batch=i,
                       progress=min(1.0, done / max(1, cfg.epochs * n_batches)), device=dev, generator=gen, amp=amp)


def _note(means: dict[str, float]) -> str:
    return " ".join(f"{k.replace('accuracy', 'acc')} {v:.4f}" if k == "loss" else
                    f"{k.replace('accuracy', 'acc')} {v:.3f}" for k, v in means.items())


def _set_modes(mods: Mapping[str, Any], training: set[str], freeze_all_norms: bool, update_all_norms: bool) -> None:
    """Modules that train: training mode, except batch-norm layers whose own parameters are all frozen (or all of
    them, with ``freeze_all_norms``; none, with ``update_all_norms``): they keep their running statistics. Other
    modules: eval mode."""
    import torch

    for n, model in mods.items():
        if n not in training:
            model.eval()
            continue
        model.train()
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                own = list(mod.parameters(recurse=False))
                if freeze_all_norms or (not update_all_norms and own and not any(p.requires_grad for p in own)):
                    mod.eval()
