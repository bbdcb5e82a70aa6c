"""What a capability adds to training: an :class:`Objective`.

The loop owns devices, modes, the optimiser, the schedule, checkpoints, resume, progress and early stopping; an
objective says what one step computes (``step``), what validation measures (``evaluate``), which logged value picks
the best epoch (``select``) and which parameters train (``trainable``). :class:`Supervised` is the default: today's
(weighted, smoothed) cross-entropy with optional extra loss terms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TransferlabError

#: A logged value: a float or 0-d tensor (a mean over the batch, weighted by the batch's size when epochs are
#: summarised) or a pair ``(total, count)`` summed exactly over the epoch (e.g. ``(correct, n)`` for accuracy).
Logged = Any


@dataclass
class StepContext:
    """Where training stands, handed to every ``step`` and hook."""

    epoch: int  # 0-based epoch
    epochs: int
    step: int  # optimizer steps taken so far
    batch: int  # batch index within the epoch
    progress: float  # fraction of all batches done, in [0, 1] (DANN's schedule reads it)
    device: Any
    generator: Any  # a torch.Generator for the objective's own randomness, seeded by (seed, epoch): resume-exact
    amp: bool = False


class Objective:
    """Base class of training objectives (override ``step``; the rest has sensible defaults).

    - ``step(batch, modules, ctx) -> (loss, logs)``: ``batch`` is a dict (``x``, ``y``, ``index``...; paired streams
      give ``{"source": {...}, "target": {...}}``), ``modules`` the dict of named modules on the device.
    - ``evaluate(batch, modules) -> logs`` on validation data (no gradients, modules in eval mode); logged as
      ``val_<name>``. Training logs are ``train_<name>`` (the loss as ``train_loss``).
    - ``select = (name, higher_is_better)``: the row value that picks the best epoch (e.g. ``("val_accuracy", True)``,
      or a label-free score); when a row lacks it, nothing is selected and the last epoch's weights stay.
    - ``trainable(modules)``: parameters to optimise, each optionally as ``(param, lr_scale)``; default: every
      parameter of every module that requires a gradient. Modules with no trainable parameter stay in eval mode.
    - ``freeze_norm_stats``: batch norms of trained modules keep their running statistics (by default only those
      whose own parameters are all frozen do); ``update_norm_stats``: they all update them, frozen or not (running
      statistics kept per task, as the continual supermasks do).
    - ``epoch_scores(modules, device) -> {name: float}``: scores over whole sets, once per epoch after validation
      and before selection (a label-free score of all target predictions, which no per-batch mean gives); they join
      the epoch's row under their own names, so ``select`` can name one.
    - hooks: ``setup(modules, device)`` once before training, ``after_step(modules, ctx)`` after each optimizer step,
      ``end_epoch(modules, ctx, row)`` after each epoch's validation.
    - ``config()``: the objective's options (JSON-able); part of the checkpoint's fingerprint, so a run never
      resumes under another objective. ``state_dict()``/``load_state_dict()``: state carried in checkpoints.
    """

    select: tuple[str, bool] = ("val_accuracy", True)
    freeze_norm_stats: bool = False
    update_norm_stats: bool = False

    def setup(self, modules: Mapping[str, Any], device: Any) -> None:
        pass

    def trainable(self, modules: Mapping[str, Any]) -> Iterable[Any]:
        seen: set[int] = set()
        out = []
        for m in modules.values():
            for p in m.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def step(self, batch: Any, modules: Mapping[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Logged]]:
        raise NotImplementedError

    def evaluate(self, batch: Any, modules: Mapping[str, Any]) -> dict[str, Logged]:
        return {}

    def after_step(self, modules: Mapping[str, Any], ctx: StepContext) -> None:
        pass

    def epoch_scores(self, modules: Mapping[str, Any], device: Any) -> dict[str, float]:
        return {}

    def end_epoch(self, modules: Mapping[str, Any], ctx: StepContext, row: dict[str, float]) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def identity(self) -> dict[str, Any]:
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", **self.config()}


def class_weight_vector(class_weights: Any, labels: np.ndarray | None, num_classes: int | None) -> Any:
    """Per-class loss weights: ``"balanced"`` (inverse class frequency of ``labels``), an explicit list, or None."""
    import torch

    if class_weights is None:
        return None
    if num_classes is None:
        num_classes = int(np.max(labels)) + 1 if labels is not None else None
    if class_weights == "balanced":
        if labels is None or num_classes is None:
            raise TransferlabError("class_weights='balanced' needs the training labels (labels=...)")
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        w = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    else:
        w = np.asarray(class_weights, dtype=np.float64)
        if num_classes is not None and len(w) != num_classes:
            raise TransferlabError(f"class_weights has {len(w)} entries for {num_classes} classes")
    return torch.tensor(w, dtype=torch.float32)


def accuracy(logits: Any, y: Any) -> tuple[int, int]:
    """``(correct, n)``: exact counts, summed over an epoch."""
    return int((logits.detach().argmax(1) == y).sum()), int(len(y))


class Supervised(Objective):
    """Cross-entropy on ``modules[module](batch["x"])`` against ``batch["y"]``; validation loss and accuracy.

    ``params``: what trains (default: what requires a gradient); ``lr_scales``: ``id(param) -> multiplier`` of the
    learning rate. ``class_weights``: ``"balanced"`` (needs ``labels``) or a list; ``label_smoothing``.
    ``terms``: extra loss terms ``term(model, x, logits) -> scalar`` (L2-SP, BSS...). ``loss(logits, y)``: replaces
    the cross-entropy (e.g. entropy on unlabelled data). ``after_step()``: runs after every optimizer step (e.g. a
    projection that keeps a sparse update sparse). ``options``: what else identifies the run (e.g. the fit method
    and its options) for the checkpoint fingerprint.
    """

    def __init__(self, module: str = "model", *, params: Iterable[Any] | None = None,
                 lr_scales: Mapping[int, float] | None = None, class_weights: Any = None,
                 label_smoothing: float = 0.0, labels: np.ndarray | None = None, num_classes: int | None = None,
                 terms: Iterable[Callable[[Any, Any, Any], Any]] = (), loss: Callable[[Any, Any], Any] | None = None,
                 freeze_norm_stats: bool = False, after_step: Callable[[], None] | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        if not 0 <= label_smoothing < 1:
            raise TransferlabError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.module = module
        self.params = None if params is None else list(params)
        self.lr_scales = dict(lr_scales or {})
        self.class_weights, self.label_smoothing = class_weights, float(label_smoothing)
        self.terms = [t for t in terms if t is not None]
        self.loss, self.freeze_norm_stats, self._after = loss, freeze_norm_stats, after_step
        self.options = dict(options or {})
        self._weights = class_weight_vector(class_weights, labels, num_classes)
        self._ce: Any = None
        self._plain: Any = None

    def setup(self, modules: Mapping[str, Any], device: Any) -> None:
        import torch

        if self.module not in modules:
            raise TransferlabError(f"the supervised objective trains module {self.module!r}; modules: "
                                   f"{', '.join(modules)}")
        w = None if self._weights is None else self._weights.to(device)
        self._ce = self.loss or torch.nn.CrossEntropyLoss(weight=w, label_smoothing=self.label_smoothing)
        self._plain = torch.nn.CrossEntropyLoss()

    def trainable(self, modules: Mapping[str, Any]) -> Iterable[Any]:
        params = self.params if self.params is not None else super().trainable(modules)
        return [(p, float(self.lr_scales.get(id(p), 1.0))) for p in params]

    def step(self, batch: Any, modules: Mapping[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Logged]]:
        net = modules[self.module]
        x, y = batch["x"], batch["y"]
        logits = net(x)
        loss = self._ce(logits.float(), y)
        for term in self.terms:
            loss = loss + term(net, x, logits)
        return loss, {"accuracy": accuracy(logits, y)}

    def evaluate(self, batch: Any, modules: Mapping[str, Any]) -> dict[str, Logged]:
        if self._plain is None:
            import torch

            self._plain = torch.nn.CrossEntropyLoss()
        logits = modules[self.module](batch["x"])
        return {"loss": self._plain(logits.float(), batch["y"]), "accuracy": accuracy(logits, batch["y"])}

    def after_step(self, modules: Mapping[str, Any], ctx: StepContext) -> None:
        if self._after is not None:
            self._after()

    def config(self) -> dict[str, Any]:
        return {"module": self.module, "class_weights": self.class_weights, "label_smoothing": self.label_smoothing,
                "terms": [getattr(t, "__qualname__", type(t).__name__) for t in self.terms],
                "loss": None if self.loss is None else getattr(self.loss, "__qualname__", type(self.loss).__name__),
                "freeze_norm_stats": self.freeze_norm_stats, **self.options}

