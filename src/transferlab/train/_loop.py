"""The one training loop.

AdamW with linear warm-up and cosine decay, gradient accumulation, gradient clipping, mixed precision on CUDA,
selection of the best epoch by the objective's ``select`` value (the best weights are restored) with optional early
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
from ._data import batch_size_of, epoch_batches, epoch_generator, loader, num_batches, to_device
from ._objective import Objective, StepContext
from ._state import CHECKPOINT, resume, save_checkpoint, seed_everything


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


def evaluate(objective: Objective, modules: Mapping[str, Any], data: Any, batch_size: int, num_workers: int = 0,
             device: Any = None) -> dict[str, float]:
    """The objective's validation values on ``data`` (modules in eval mode, no gradients), averaged over examples."""
    import torch

    for m in modules.values():
        m.eval()
    summary = _Summary()
    with torch.inference_mode():
        for batch in loader(data, batch_size, num_workers):
            batch = to_device(batch, device) if device is not None else batch
            summary.add(objective.evaluate(batch, modules), batch_size_of(batch))
    return summary.means("")


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
    """
    import torch

    cfg = config or TrainConfig()
    mods = dict(modules) if isinstance(modules, Mapping) else {"model": modules}
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed_everything(cfg.seed)
    for m in mods.values():
        m.to(dev)
    objective.setup(mods, dev)
    loop = _Loop(cfg, objective, mods, dev, data)
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckdir is not None and (ckdir / CHECKPOINT).is_file():
        loop.resume(ckdir)
    has_val = val_data is not None and len(val_data) > 0
    with progress_bars(progress) as bars:
        for epoch in range(loop.start_epoch, cfg.epochs):
            if loop.epoch(epoch, data, val_data if has_val else None, bars, ckdir):
                break
    return loop.finish()


class _Loop:
    """One training run's state: the trainable parameters and their learning-rate scales, the optimiser, schedule
    and gradient scaler, the result so far and the best epoch's weights."""

    def __init__(self, cfg: TrainConfig, objective: Objective, mods: dict[str, Any], dev: Any, data: Any) -> None:
        import torch

        self.cfg, self.objective, self.mods, self.dev = cfg, objective, mods, dev
        self.use_amp = cfg.amp and dev.type == "cuda"
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
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.result = TrainResult()
        self.start_epoch = 0
        self.best_state: dict[str, Any] | None = None
        self.bad_epochs = 0
        self.t0 = time.perf_counter()

    def resume(self, ckdir: Path) -> None:
        """Continue after the last finished epoch of the checkpoint in ``ckdir``."""
        r = self.result
        self.start_epoch, self.best_state = resume(ckdir, self.cfg, self.objective, self.mods, self.opt, self.sched,
                                                   self.scaler, r)
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
        row = {"epoch": epoch + 1, **summary.means("train_"), "lr": float(self.sched.get_last_lr()[0])}
        if val_data is not None:
            row.update({f"val_{k}": v for k, v in evaluate(self.objective, self.mods, val_data, cfg.batch_size,
                                                            cfg.num_workers, self.dev).items()})
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
        improved = self._select(row, epoch)
        self.objective.end_epoch(self.mods, _context(cfg, epoch, self.n_batches, self.n_batches,
                                                     self.steps_per_epoch, self.dev, ctx_gen, self.use_amp), row)
        r.history.append(row)
        r.epochs_run = epoch + 1
        r.train_seconds = time.perf_counter() - self.t0
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        stop = cfg.patience is not None and r.best_epoch is not None and self.bad_epochs >= cfg.patience
        over_budget = cfg.budget_seconds is not None and r.train_seconds > cfg.budget_seconds
        r.stopped_early = (stop or over_budget) and epoch + 1 < cfg.epochs  # not when the last epoch ends it
        if ckdir is not None:
            save_checkpoint(ckdir, cfg, self.objective, self.mods, self.opt, self.sched, self.scaler, r, epoch + 1,
                            self.best_state)
        return stop or over_budget

    def _batches(self, epoch: int, data: Any, ctx_gen: Any, bars: Any, task: Any) -> _Summary:
        """One pass over ``data``: a step per batch, an optimiser step every ``grad_accum`` batches."""
        import torch

        cfg, opt, dev = self.cfg, self.opt, self.dev
        summary = _Summary()
        opt.zero_grad(set_to_none=True)
        for i, batch in enumerate(epoch_batches(data, cfg.batch_size, cfg.num_workers, cfg.seed, epoch)):
            batch = to_device(batch, dev)
            ctx = _context(cfg, epoch, i, self.n_batches, self.steps_per_epoch, dev, ctx_gen, self.use_amp)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=self.use_amp):
                step_loss, logs = self.objective.step(batch, self.mods, ctx)
            if not torch.isfinite(step_loss):
                raise TransferlabError(
                    f"training diverged: the loss became {float(step_loss.detach())} in epoch {epoch + 1}; lower "
                    "--lr (or disable mixed precision)")
            self.scaler.scale(step_loss / cfg.grad_accum).backward()
            if (i + 1) % cfg.grad_accum == 0 or i + 1 == self.n_batches:
                if cfg.clip_grad_norm is not None:
                    self.scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(self.trainable, cfg.clip_grad_norm)
                self.scaler.step(opt)
                self.scaler.update()
                self.sched.step()
                self.objective.after_step(self.mods, ctx)
                opt.zero_grad(set_to_none=True)
            summary.add({"loss": step_loss.detach(), **logs}, batch_size_of(batch))
            if bars.enabled:
                bars.advance(task, note=_note(summary.means("")))
        return summary

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
