"""The one training loop.

AdamW with linear warm-up and cosine decay, optional class weights (cost-sensitive learning) and label smoothing,
gradient accumulation, gradient clipping, mixed precision on CUDA, early stopping on a validation split (the best
weights are restored), a checkpoint after every epoch and exact resume after a kill: an interrupted run resumed from
its checkpoint directory ends with the same weights as an uninterrupted run with the same seed, because each epoch's
shuffling comes from ``seed + epoch`` and the checkpoint carries every random generator's state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .._io import atomic_open, write_json_atomic
from .._version import __version__
from ..errors import TransferlabError

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
STATE = "train_state.json"


class TrainConfig(BaseModel):
    """Training hyper-parameters (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="maximum number of epochs")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay")
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of all optimizer steps spent warming up linearly")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of lr")
    batch_size: int = Field(32, ge=1, description="examples per forward pass")
    grad_accum: int = Field(1, ge=1, description="forward passes per optimizer step")
    clip_grad_norm: float | None = Field(1.0, gt=0, description="max global gradient norm (None: no clipping)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    class_weights: Literal["balanced"] | list[float] | None = Field(
        None, description="'balanced' (inverse class frequency), explicit per-class weights, or None")
    amp: bool = Field(True, description="mixed precision (float16 autocast + grad scaling) when on CUDA")
    patience: int | None = Field(None, ge=1, description="early stopping: epochs without validation improvement")
    seed: int = Field(0, description="seed for initialisation-free randomness: shuffling, dropout, augmentation")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    budget_seconds: float | None = Field(None, gt=0, description="stop after the epoch that exceeds this wall time")

    def fingerprint(self) -> str:
        """Identity of everything that changes the result (not num_workers or the time budget)."""
        d = self.model_dump(exclude={"num_workers", "budget_seconds"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    import torch

    py = random.getstate()
    npy = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": list(py[1]), "python_gauss": py[2],
          "numpy": npy[1].tolist(), "numpy_pos": int(npy[2]), "numpy_gauss": [int(npy[3]), float(npy[4])]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), st["python_gauss"]))
    np.random.set_state(("MT19937", np.array(st["numpy"], dtype=np.uint32), st["numpy_pos"], *st["numpy_gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def warmup_cosine(total_steps: int, warmup: float, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up over ``warmup * total_steps`` steps, then cosine to ``min_ratio``."""
    w = int(round(warmup * total_steps))

    def f(step: int) -> float:
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, total_steps - w))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _class_weights(cfg: TrainConfig, labels: np.ndarray | None, num_classes: int) -> Any:
    import torch

    if cfg.class_weights is None:
        return None
    if cfg.class_weights == "balanced":
        if labels is None:
            raise TransferlabError("class_weights='balanced' needs the training labels (train_labels=...)")
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        w = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    else:
        w = np.asarray(cfg.class_weights, dtype=np.float64)
        if len(w) != num_classes:
            raise TransferlabError(f"class_weights has {len(w)} entries for {num_classes} classes")
    return torch.tensor(w, dtype=torch.float32)


class LengthGroupedBatches:
    """Batch sampler for variable-length inputs (``data.lengths``): shuffle, cut into pools of ``pool`` batches, sort
    each pool by length, batch it, shuffle the batches. Each batch then pads to a similar length (the texts of the
    built-in reviews run from 5 to 700 tokens, median 27), at the same randomness as plain shuffling per pool."""

    def __init__(self, lengths: np.ndarray, batch_size: int, generator: Any, shuffle: bool = True,
                 pool: int = 50) -> None:
        self.lengths, self.batch_size, self.generator = np.asarray(lengths), batch_size, generator
        self.shuffle, self.pool = shuffle, pool

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        n, bs = len(self.lengths), self.batch_size
        idx = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
        batches = []
        for s in range(0, n, bs * self.pool):
            chunk = idx[s:s + bs * self.pool]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + bs].tolist() for i in range(0, len(chunk), bs)]
        order = torch.randperm(len(batches), generator=self.generator).tolist() if self.shuffle else range(len(batches))
        for i in order:
            yield batches[i]


def _loader(data: Any, cfg: TrainConfig, shuffle: bool, epoch: int) -> Any:
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator()
    g.manual_seed(cfg.seed * 1_000_003 + epoch)
    lengths = getattr(data, "lengths", None)
    if lengths is not None:
        return DataLoader(data, batch_sampler=LengthGroupedBatches(lengths, cfg.batch_size, g, shuffle),
                          num_workers=cfg.num_workers)
    return DataLoader(data, batch_size=cfg.batch_size, shuffle=shuffle, generator=g if shuffle else None,
                      num_workers=cfg.num_workers, drop_last=False)


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[stats]}")) as bar:
        yield bar


def evaluate(model: Any, data: Any, cfg: TrainConfig, device: Any, loss_fn: Any) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (eval mode, no gradients)."""
    import torch

    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    with torch.inference_mode():
        for x, y in _loader(data, cfg, shuffle=False, epoch=0):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += float(loss_fn(logits.float(), y)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return loss_sum / max(total, 1), correct / max(total, 1)


def train(
    model: Any,
    train_data: Any,
    val_data: Any | None = None,
    config: TrainConfig | None = None,
    *,
    num_classes: int | None = None,
    train_labels: np.ndarray | None = None,
    params: Any = None,
    regularizer: Callable[[Any, Any, Any], Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    after_step: Callable[[], None] | None = None,
    freeze_norm_stats: bool = False,
    lr_scales: dict[int, float] | None = None,
    loss: Callable[[Any, Any], Any] | None = None,
) -> TrainResult:
    """Train ``model`` (a module mapping a batch to class logits) in place on a map-style torch dataset of (x, y).

    ``params``: the parameters to optimise (default: those with ``requires_grad``). ``regularizer(model, x, logits)``
    adds a term to the loss (L2-SP, BSS...). ``after_step()`` runs after every optimizer step (e.g. a projection
    that keeps a sparse update sparse). ``lr_scales``: ``id(param) -> multiplier`` of the learning rate (and of its
    schedule) for some parameters. ``loss(logits, y)``: the training objective instead of (weighted, smoothed)
    cross-entropy (e.g. merge coefficients learned by entropy on unlabelled data). ``freeze_norm_stats``: every batch-norm layer keeps its running statistics
    (by default only those whose own parameters are all frozen do). ``checkpoint_dir``: write a checkpoint after each epoch and resume from it
    when present (the directory must come from the same config, else an error). Returns the per-epoch history.
    """
    import torch

    cfg = config or TrainConfig()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_amp = cfg.amp and dev.type == "cuda"
    seed_everything(cfg.seed)
    model.to(dev)
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    if not trainable:
        raise TransferlabError("nothing to train: no parameter requires a gradient")
    n_batches = math.ceil(len(train_data) / cfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    scales = lr_scales or {}
    groups: dict[float, list[Any]] = {}
    for p in trainable:
        groups.setdefault(float(scales.get(id(p), 1.0)), []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "lr": cfg.lr * s} for s, ps in groups.items()], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, cfg.warmup, cfg.min_lr_ratio))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    c = num_classes if num_classes is not None else (int(np.max(train_labels)) + 1 if train_labels is not None else None)
    weights = _class_weights(cfg, train_labels, c) if c is not None else None
    loss_fn = loss or torch.nn.CrossEntropyLoss(weight=None if weights is None else weights.to(dev),
                                                label_smoothing=cfg.label_smoothing)
    plain_loss = torch.nn.CrossEntropyLoss()

    result = TrainResult()
    start_epoch = 0
    best_state: dict[str, Any] | None = None
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckdir is not None and (ckdir / CHECKPOINT).is_file():
        start_epoch, best_state = _resume(ckdir, cfg, model, opt, sched, scaler, result)
        result.resumed_from_epoch = start_epoch
    bad_epochs = _epochs_since_best(result)
    t0 = time.perf_counter() - result.train_seconds
    with _progress(progress, n_batches) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            _train_mode(model, freeze_norm_stats)
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=n_batches, stats="") if bar else None
            run_loss, run_correct, run_n = 0.0, 0, 0
            opt.zero_grad(set_to_none=True)
            for i, (x, y) in enumerate(_loader(train_data, cfg, shuffle=True, epoch=epoch)):
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                    logits = model(x)
                    step_loss = loss_fn(logits.float(), y)
                    if regularizer is not None:
                        step_loss = step_loss + regularizer(model, x, logits)
                if not torch.isfinite(step_loss):
                    raise TransferlabError(
                        f"training diverged: the loss became {float(step_loss.detach())} in epoch {epoch + 1}; lower "
                        "--lr (or disable mixed precision)")
                scaler.scale(step_loss / cfg.grad_accum).backward()
                last = (i + 1) % cfg.grad_accum == 0 or i + 1 == n_batches
                if last:
                    if cfg.clip_grad_norm is not None:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_grad_norm)
                    scaler.step(opt)
                    scaler.update()
                    sched.step()
                    if after_step is not None:
                        after_step()
                    opt.zero_grad(set_to_none=True)
                run_loss += float(step_loss.detach()) * len(y)
                run_correct += int((logits.detach().argmax(1) == y).sum())
                run_n += len(y)
                if bar:
                    bar.update(task, advance=1, stats=f"loss {run_loss / run_n:.4f} acc {run_correct / run_n:.3f}")
            row = {"epoch": epoch + 1, "train_loss": run_loss / run_n, "train_accuracy": run_correct / run_n,
                   "lr": float(sched.get_last_lr()[0])}
            improved = False
            if val_data is not None and len(val_data):
                row["val_loss"], row["val_accuracy"] = evaluate(model, val_data, cfg, dev, plain_loss)
                if result.best_val_accuracy is None or row["val_accuracy"] > result.best_val_accuracy:
                    result.best_val_accuracy, result.best_epoch = row["val_accuracy"], epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    improved = True
            result.history.append(row)
            result.epochs_run = epoch + 1
            result.train_seconds = time.perf_counter() - t0
            bad_epochs = 0 if improved else bad_epochs + 1
            stop = cfg.patience is not None and val_data is not None and bad_epochs >= cfg.patience
            over_budget = cfg.budget_seconds is not None and result.train_seconds > cfg.budget_seconds
            result.stopped_early = stop or (over_budget and epoch + 1 < cfg.epochs)
            if ckdir is not None:
                _save(ckdir, cfg, model, opt, sched, scaler, result, epoch + 1, best_state)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
            if stop or over_budget:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def _train_mode(model: Any, freeze_all_norms: bool = False) -> None:
    """Training mode, except batch-norm layers whose own parameters are all frozen (or all of them, with
    ``freeze_all_norms``): they keep their running statistics (a frozen backbone stays the backbone it was)."""
    import torch

    model.train()
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            own = list(mod.parameters(recurse=False))
            if freeze_all_norms or (own and not any(p.requires_grad for p in own)):
                mod.eval()


def _epochs_since_best(result: TrainResult) -> int:
    return 0 if result.best_epoch is None else result.epochs_run - result.best_epoch


def _save(ckdir: Path, cfg: TrainConfig, model: Any, opt: Any, sched: Any, scaler: Any, result: TrainResult,
          epoch: int, best_state: dict[str, Any] | None) -> None:
    import torch

    payload = {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
               "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rng": _rng_state(),
               "best": best_state}
    ckdir.mkdir(parents=True, exist_ok=True)
    with atomic_open(ckdir / CHECKPOINT, "wb") as fh:
        torch.save(payload, fh)
    write_json_atomic(ckdir / STATE, {
        "transferlab_version": __version__, "config": cfg.model_dump(), "config_fingerprint": cfg.fingerprint(),
        "epoch": epoch, "history": result.history, "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy, "train_seconds": result.train_seconds})


def _resume(ckdir: Path, cfg: TrainConfig, model: Any, opt: Any, sched: Any, scaler: Any,
            result: TrainResult) -> tuple[int, dict[str, Any] | None]:
    import torch

    try:
        state = json.loads((ckdir / STATE).read_text())
    except (OSError, ValueError):
        raise TransferlabError(f"{ckdir} holds a checkpoint but no readable {STATE}; remove the directory to start "
                               "over") from None
    if state.get("config_fingerprint") != cfg.fingerprint():
        diff = {k: (state["config"].get(k), v) for k, v in cfg.model_dump().items()
                if state.get("config", {}).get(k) != v and k not in ("num_workers", "budget_seconds")}
        raise TransferlabError(
            f"cannot resume in {ckdir}: it was written with a different training config "
            f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); use another output directory or "
            "the same settings")
    payload = torch.load(ckdir / CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    _set_rng_state(payload["rng"])
    result.history = list(state["history"])
    result.best_epoch, result.best_val_accuracy = state["best_epoch"], state["best_val_accuracy"]
    result.epochs_run = int(payload["epoch"])
    result.train_seconds = float(state.get("train_seconds", 0.0))
    log.info("resuming from %s after epoch %d", ckdir, payload["epoch"])
    return int(payload["epoch"]), payload["best"]
