"""``linear``: task arithmetic with one weight per model, ``base + lam * sum_t w_t tau_t`` (``normalize``: divided by
``sum_t w_t``). With ``normalize`` and ``lam=1`` it is the weighted average ``sum_t w_t theta_t / sum_t w_t`` of the
fine-tuned weights, mergekit's ``linear``; without ``normalize`` it is mergekit's ``task_arithmetic`` with per-model
weights. Equal weights give ``average`` (normalised) or ``task_arithmetic`` (``lam * w``): a configured instance of
the one task-arithmetic implementation (``_arith.Arithmetic``), its task vectors scaled first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TransferlabError
from ._arith import Arithmetic, Method
from ._registry import MERGE_METHODS


@dataclass
class Linear(Method):
    weights: list[float] | None = None
    normalize: bool = True
    lam: float = 1.0

    def __post_init__(self) -> None:
        if self.weights is not None:
            self.weights = [float(w) for w in self.weights]
            if not all(np.isfinite(self.weights)):
                raise TransferlabError(f"weights must be finite numbers, got {self.weights}")
            if self.normalize and abs(sum(self.weights)) < 1e-8:
                raise TransferlabError(f"weights {self.weights} sum to 0: with normalize=true they are divided by "
                                       "their sum; give weights with a non-zero sum, or normalize=false")
        if not np.isfinite(self.lam):
            raise TransferlabError(f"lam must be a finite number, got {self.lam}")
        self._sum = Arithmetic(lam=float(self.lam))

    def options(self) -> dict[str, Any]:
        return {"weights": self.weights, "normalize": self.normalize, "lam": self.lam}

    def _scales(self, n: int) -> list[float]:
        w = self.weights if self.weights is not None else [1.0] * n
        if len(w) != n:
            raise TransferlabError(f"{len(w)} weights for {n} models: give one weight per model, in the same order")
        total = sum(w) if self.normalize else 1.0
        return [x / total for x in w]

    def prepare(self, job: Any) -> None:
        self._scales(len(job.tasks))  # a wrong count fails before any tensor is written

    def weighted_sum(self, n: int) -> tuple[float, list[float]] | None:
        """``c_t = lam s_t`` (``s_t``: the weights, divided by their sum with ``normalize``), ``c_0 = 1 - sum_t c_t``:
        ``1 - lam`` with ``normalize`` (exactly 0 at ``lam = 1``: the base is not read)."""
        s = self._scales(n)
        c0 = 1.0 - self.lam if self.normalize else 1.0 - self.lam * sum(s)
        return c0, [self.lam * x for x in s]

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        scaled = [None if d is None else d * s for d, s in zip(deltas, self._scales(len(deltas)), strict=True)]
        return self._sum.merge_tensor(key, base, scaled)


@MERGE_METHODS.register("linear", summary="weighted task arithmetic: base + lam * sum_t w_t tau_t (normalize: / sum "
                        "w_t, the weighted average of the models; mergekit's linear)",
                        paper="Wortsman et al., Model soups, ICML 2022; Ilharco et al., task arithmetic, ICLR 2023",
                        reference="arcee-ai/mergekit (linear: LinearMergeTask; task_arithmetic: GTATask)")
def linear(weights: list[float] | None = None, normalize: bool = True, lam: float = 1.0) -> Linear:
    return Linear(weights=None if weights is None else list(weights), normalize=bool(normalize), lam=float(lam))
