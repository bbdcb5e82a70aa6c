"""The reference checkpoint of the ``guarded`` selector, and the weights ``adapt`` falls back to when no epoch passes.

- Source-free run: the reference is the source model itself, before adaptation (epoch 0): its target predictions'
  balance (there is no source hold-out to keep). Falling back restores it.
- Run with source data: the network starts from a fresh bottleneck head, so epoch 0 is no source-only model; every
  method trains the source cross-entropy, and the run's most source-accurate epoch so far is the reference (its
  source hold-out accuracy; the target balance is judged against uniform predictions, since that epoch may itself
  have collapsed). Falling back keeps that epoch (``source_val``'s pick). The reference (and its weights) is part
  of every epoch's checkpoint: a resumed run judges by the same one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._selectors import balance


class Guard:
    """``keep_weights``: keep a CPU copy of the reference's weights (only when ``guarded`` selects)."""

    def __init__(self, keep_weights: bool) -> None:
        self.keep_weights = keep_weights
        self.reference: dict[str, Any] | None = None
        self.epoch: int | None = None  # the reference's epoch (0: the model before adaptation)
        self.oracle_accuracy: float | None = None
        self.fixed = False
        self._seen = 0
        self._state: dict[str, Any] | None = None

    def _keep(self, net: Any) -> None:
        if self.keep_weights:
            self._state = {k: t.detach().to("cpu", copy=True) for k, t in net.state_dict().items()}

    def start(self, net: Any, probs_t: np.ndarray, oracle_accuracy: float | None) -> None:
        """Source-free: the model before adaptation is the reference, for the whole run."""
        self.reference = {"balance": balance(probs_t), "predictions": [int(c) for c in np.argmax(probs_t, 1)]}
        self.epoch, self.oracle_accuracy, self.fixed = 0, oracle_accuracy, True
        self._keep(net)

    def observe(self, net: Any, probs_t: np.ndarray, source_accuracy: float | None) -> dict[str, float] | None:
        """One more epoch scored (its target predictions, its source hold-out accuracy): the reference to judge it
        by (with source data, itself when it is the most source-accurate so far)."""
        self._seen += 1
        if self.fixed or source_accuracy is None:
            return self.reference
        if self.reference is None or source_accuracy > self.reference["source_accuracy"]:
            self.reference = {"source_accuracy": float(source_accuracy)}  # balance: judged against uniform
            self.epoch = self._seen
            self._keep(net)
        return self.reference

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the reference, its epoch and weights (a resumed run judges by the same)."""
        return {"reference": self.reference, "epoch": self.epoch, "oracle_accuracy": self.oracle_accuracy,
                "fixed": self.fixed, "seen": self._seen, "weights": self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.reference, self.epoch, self.oracle_accuracy = state["reference"], state["epoch"], \
                state["oracle_accuracy"]
            self.fixed, self._seen, self._state = state["fixed"], state["seen"], state["weights"]

    def fall_back_(self, net: Any) -> dict[str, Any]:
        """Restore the reference's weights into ``net`` (in place); what the report says about it."""
        if self._state is not None:
            net.load_state_dict(self._state)
        to = "the source model before adaptation" if self.epoch == 0 else \
            f"epoch {self.epoch}, the most accurate on the source hold-out"
        return {"fell_back": True, "epoch": self.epoch, "to": to,
                "reason": "no epoch kept the source accuracy within the tolerance with uncollapsed target "
                          "predictions"}
