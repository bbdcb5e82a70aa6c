"""The transfer evidence of a distillation on the test split (Roth et al., ICLR 2024, for the first four):
transfer delta (accuracy after − before), knowledge gain and loss (share of examples that flip to right / to wrong
against the starting student), complementary knowledge (share where a teacher is right and the starting student
wrong: what there was to gain), and teacher–student agreement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def transfer_metrics(y: np.ndarray, before: np.ndarray | None, after: np.ndarray,
                     teachers: Sequence[np.ndarray]) -> dict[str, Any]:
    """``before``/``after``: the student's test logits [N, C] at the start and the end; ``teachers``: each teacher's
    (data class order)."""
    y = np.asarray(y)
    right_after = after.argmax(1) == y
    out: dict[str, Any] = {"test_accuracy": float(right_after.mean()),
                           "teacher_test_accuracy": [float((t.argmax(1) == y).mean()) for t in teachers],
                           "agreement": [float((t.argmax(1) == after.argmax(1)).mean()) for t in teachers]}
    if before is not None:
        right_before = before.argmax(1) == y
        out.update({
            "start_test_accuracy": float(right_before.mean()),
            "transfer_delta": float(right_after.mean() - right_before.mean()),
            "knowledge_gain": float((~right_before & right_after).mean()),
            "knowledge_loss": float((right_before & ~right_after).mean()),
            "complementary_knowledge": [float(((t.argmax(1) == y) & ~right_before).mean()) for t in teachers],
        })
    return out
