"""The training configuration and the result of a run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Optimisation hyper-parameters shared by every objective (unknown keys are errors). What the loss is (class
    weights, label smoothing, extra terms) belongs to the objective."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="maximum number of epochs")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay")
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of all optimizer steps spent warming up linearly")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of lr")
    batch_size: int = Field(32, ge=1, description="examples per forward pass (per stream)")
    grad_accum: int = Field(1, ge=1, description="forward passes per optimizer step")
    clip_grad_norm: float | None = Field(1.0, gt=0, description="max global gradient norm (None: no clipping)")
    amp: bool = Field(True, description="mixed precision (float16 autocast + grad scaling) when on CUDA; "
                      "precision, when set, decides instead")
    precision: Literal["fp32", "bf16", "fp16"] | None = Field(
        None, description="autocast dtype of the training steps: fp32 (none), bf16 (CPU or GPU; no grad scaling), fp16 "
        "(CUDA only, with grad scaling); None: as amp says (fp16 on CUDA, else fp32)")
    patience: int | None = Field(None, ge=1, description="early stopping: epochs without improvement of the "
                                 "objective's selection value")
    seed: int = Field(0, description="seed for initialisation-free randomness: shuffling, dropout, augmentation")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    budget_seconds: float | None = Field(None, gt=0, description="stop after the epoch that exceeds this wall time")
    data_fingerprint: str | None = Field(None, description="identity of the training and validation data "
                                         "(data.training_fingerprint): a checkpoint written for other data is not "
                                         "resumed")

    def fingerprint(self, objective: dict[str, Any] | None = None) -> str:
        """Identity of everything that changes the result (not num_workers or the time budget), with the
        objective's own identity (its class and options)."""
        d = self.model_dump(exclude={"num_workers", "budget_seconds"})
        for key in ("precision", "data_fingerprint"):  # unset: the fingerprint of the configs before the field
            if d[key] is None:                         # (their checkpoints resume)
                del d[key]
        if objective is not None:
            d = {**d, "objective": objective}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """One row per epoch in ``history`` (``train_*`` from the steps, ``val_*`` from the objective's ``evaluate``);
    ``best_epoch`` is the epoch whose ``selected_by`` value was best (its weights were restored), None when nothing
    selected (no validation data and no train-side selection value)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    selected_by: str | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    train_seconds: float = 0.0

    @property
    def best_val_accuracy(self) -> float | None:
        """Validation accuracy of the selected epoch (None without validation accuracy)."""
        if self.best_epoch is None:
            return None
        v = self.history[self.best_epoch - 1].get("val_accuracy")
        return None if v is None else float(v)

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best_epoch": self.best_epoch, "best_value": self.best_value,
                "selected_by": self.selected_by, "best_val_accuracy": self.best_val_accuracy,
                "epochs_run": self.epochs_run, "stopped_early": self.stopped_early,
                "resumed_from_epoch": self.resumed_from_epoch, "train_seconds": self.train_seconds}
