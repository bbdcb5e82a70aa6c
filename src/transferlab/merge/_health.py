"""A merge checked on data: each head of the merged network beside its own fit, on the same held-out examples of
its task, so that a merge which lost a task says so (``merge.json``, ``report.html``, the terminal) instead of
staying silent. Only with data (``--data``: one dataset per model) and models that have heads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("transferlab.merge._api")

#: held-out examples per task (a stratified sample of its test split) the check scores both models on
EXAMPLES = 500
#: a merged head this far (accuracy, absolute) below its own fit is "far below" it
FAR_BELOW = 0.10


def check_heads(model_dir: Path, job: Any, task_names: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (task, examples, chance, the fit's accuracy, the merged head's, the difference) and warnings: a merged
    head far below its own fit or at chance, a fit that was at chance itself. Nothing without data or heads."""
    if not job.data or not any(t.head_keys() for t in job.tasks) or len(job.data) != len(job.tasks):
        return [], []
    from ..models import evaluate  # only now: importing the training loop costs a merge without data 0.06 s
    from ..train import CHANCE_MARGIN, chance_level

    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for data, t, name in zip(job.data, job.tasks, task_names, strict=True):
        ds = _held_out(data)
        merged = evaluate(model_dir, ds, head=name)["accuracy"]
        fit = evaluate(t.path, ds)["accuracy"] if t.path is not None and t.config else None
        chance = chance_level(ds.labels, ds.num_classes)
        rows.append({"task": name, "examples": len(ds), "split": ds.split, "chance": chance, "fit": fit,
                     "merged": merged, "delta": None if fit is None else merged - fit})
        on = f"on {len(ds)} {ds.split} examples of {ds.name}"
        if fit is not None and fit <= chance + CHANCE_MARGIN:
            warnings.append(f"{name}: its own fit is at chance ({fit:.3f}, chance {chance:.3f}) {on}: the merge "
                            "starts from a model that learned nothing; refit it first")
        elif merged <= chance + CHANCE_MARGIN:
            warnings.append(f"{name}: the merged head is at or below chance ({merged:.3f}, chance {chance:.3f}) {on}: this "
                            "merge lost the task (try another method, a smaller lam / weights, or keep the fit)")
        elif fit is not None and fit - merged > FAR_BELOW:
            warnings.append(f"{name}: the merged head scores {merged:.3f}, {100 * (fit - merged):.1f} points below "
                            f"its own fit ({fit:.3f}) {on} (try another method, a smaller lam / weights, or keep "
                            "the fit for this task)")
    for w in warnings:
        log.warning("%s", w)
    return rows, warnings


def _held_out(data: Any) -> Any:
    """A task's held-out examples: a reference's test split (an in-memory dataset as given), at most
    :data:`EXAMPLES` of it (stratified, seeded)."""
    from ..data import Dataset, load_dataset

    ds = data if isinstance(data, Dataset) else load_dataset(data, "test")
    return ds.stratified_sample(EXAMPLES, seed=0) if len(ds) > EXAMPLES else ds
