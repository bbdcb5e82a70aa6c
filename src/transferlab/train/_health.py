"""Warnings for a run that is plainly broken: said in the terminal, metrics.json and the report, never silent.
One owner, so every capability that trains says the same things the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: a validation split smaller than this chooses the kept epoch mostly by chance (binomial sd >= 7 points at p = 0.5)
SMALL_VALIDATION = 50
#: accuracy within this many points of chance (the larger of 1/C and the majority class's share) is "at chance",
#: or within what chance itself would reach on this many test examples (one-sided 95 %: 1.645 binomial sd)
CHANCE_MARGIN = 0.02


def chance_level(y_true: np.ndarray, n_classes: int) -> float:
    """What a model that learned nothing scores: the larger of uniform guessing and always the majority class."""
    y = np.asarray(y_true)
    majority = float(np.bincount(y[y >= 0], minlength=n_classes).max() / max(1, (y >= 0).sum())) if len(y) else 0.0
    return max(1.0 / max(1, n_classes), majority)


def health_warnings(*, y_true: np.ndarray | None = None, y_pred: np.ndarray | None = None,
                    class_names: Sequence[str] = (), history: Sequence[dict[str, Any]] = (),
                    what: str = "the model", n_val: int | None = None, kept_epoch: int | None = None) -> list[str]:
    """What is plainly wrong with a finished run: one class predicted for everything, a class never predicted,
    test accuracy at chance, validation accuracy falling every epoch, an earlier epoch (``kept_epoch``, 1-based)
    kept on a validation split of fewer than :data:`SMALL_VALIDATION` examples (``n_val``)."""
    out: list[str] = []
    c = len(class_names)
    if y_pred is not None and len(y_pred) >= 2 and c >= 2:
        seen = np.unique(y_pred)
        if len(seen) == 1:
            out.append(f"{what} predicts one class ({class_names[int(seen[0])]!r}) for every one of the {len(y_pred)} "
                       "test examples: it has not learned the task (try more epochs, another learning rate or method)")
        else:
            never = [class_names[k] for k in range(c) if k not in set(seen.tolist())]
            if never and y_true is not None and all((np.asarray(y_true) == class_names.index(n)).any()
                                                   for n in never):
                shown = ", ".join(repr(n) for n in never[:5]) + (f" and {len(never) - 5} more" if len(never) > 5
                                                                else "")
                out.append(f"{what} never predicts {shown}, though the test split has examples of it: those classes "
                           "are not learned")
        if y_true is not None and len(y_true) == len(y_pred):
            acc = float(np.mean(np.asarray(y_pred) == np.asarray(y_true)))
            chance = chance_level(np.asarray(y_true), c)
            margin = max(CHANCE_MARGIN, 1.645 * float(np.sqrt(chance * (1 - chance) / len(y_true))))
            if acc <= chance + margin:
                out.append(f"test accuracy {acc:.3f} is not above chance ({chance:.3f} for {c} classes on "
                           f"{len(y_true)} test examples): {what} has not learned the task")
    vals = [r["val_accuracy"] for r in history if isinstance(r.get("val_accuracy"), (int, float))]
    if len(vals) >= 3 and all(b < a for a, b in zip(vals, vals[1:], strict=False)):
        out.append(f"validation accuracy fell every epoch ({vals[0]:.3f} -> {vals[-1]:.3f}): the learning rate is "
                   "likely too high (the best epoch, the first, was kept)")
    elif n_val is not None and 0 < n_val < SMALL_VALIDATION and kept_epoch is not None and kept_epoch < len(history):
        p = vals[kept_epoch - 1] if len(vals) >= kept_epoch else 0.5
        sd = 100 * float(np.sqrt(p * (1 - p) / n_val))
        out.append(f"epoch {kept_epoch} of {len(history)} was kept on a validation split of {n_val} examples, which "
                   f"measures accuracy to about ±{max(sd, 100 / n_val):.0f} points: that choice is mostly chance; "
                   "with so little data, train on everything and keep the last epoch (--val-fraction 0)")
    return out
