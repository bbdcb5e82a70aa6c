"""A stream's tasks: each task's train and test splits and classes, and the stream (task- or class-incremental)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data import Dataset


@dataclass
class Task:
    """One task: its train and test splits (labels: the task's own 0..C-1 in task-incremental streams, the dataset's
    global class ids in class-incremental ones) and the classes it brings."""

    name: str
    train: Dataset
    test: Dataset
    classes: list[int]  # class-incremental: global ids; task-incremental: 0..C-1
    class_names: list[str]


@dataclass
class Stream:
    kind: str  # "task" (one head per task) or "class" (one growing head)
    tasks: list[Task]
    class_names: list[str] = field(default_factory=list)  # class-incremental: every class of the dataset
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return self.tasks[0].train.modality

    def describe(self) -> str:
        if self.kind == "class":
            sizes = sorted({len(t.classes) for t in self.tasks})
            each = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
            return f"class-incremental, {len(self.tasks)} tasks of {each} classes"
        left_out = self.source.get("excluded")
        return (f"task-incremental, {len(self.tasks)} tasks: {', '.join(t.name for t in self.tasks)}"
                + (f"; left out: {', '.join(left_out)}" if left_out else ""))
