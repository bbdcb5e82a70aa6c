"""Task streams: task-incremental (a list of datasets, each task with its own head), class-incremental (one dataset's
classes split into groups, one growing head), or a stream YAML."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..data import Dataset, load_dataset
from ..errors import TransferlabError
from ._tasks import Stream, Task

log = logging.getLogger(__name__)
__all__ = ["Stream", "Task", "class_split", "parse_stream", "task_stream"]


def _sample(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    return ds.stratified_sample(limit, seed=seed) if limit and limit < len(ds) else ds


def _name(ref: Any) -> str:
    s = str(ref)
    return Path(s).name if ":" not in s else s.split(":", 1)[1].replace("/", "-")


def task_stream(refs: Sequence[Any], limit: int | None = None, test_limit: int | None = None,
                names: Sequence[str] | None = None) -> Stream:
    """Task-incremental: each dataset a task with its own head. ``limit``/``test_limit``: class-stratified samples."""
    if len(refs) < 2:
        raise TransferlabError(f"a stream needs at least two tasks, got {len(refs)}: continual learning is about "
                               "what a second task does to the first")
    tasks, taken, excluded = [], set(), []
    for i, ref in enumerate(refs):
        train, test = load_dataset(ref, "train"), load_dataset(ref, "test")
        name = ((names[i] if names and names[i] else None)
                or (_name(ref) if not isinstance(ref, Dataset) else ref.name) or f"task{i + 1}")
        while name in taken:
            name += f"-{i + 1}"
        taken.add(name)
        if len(np.flatnonzero(train.class_counts())) < 2:  # a one-output head is always right: it would count 1.0
            excluded.append(f"{name} (one class: nothing to tell apart)")
            log.warning("continual: task %s has a single class and is left out of the stream (it would count 1.0 "
                        "towards ACC whatever the model learned)", name)
            continue
        tasks.append(Task(name, _sample(train, limit, 0), _sample(test, test_limit, 0),
                          list(range(train.num_classes)), [str(c) for c in train.class_names]))
    if len(tasks) < 2:
        raise TransferlabError(f"a stream needs at least two tasks of two or more classes; left out: "
                               f"{', '.join(excluded)}")
    modalities = sorted({t.train.modality for t in tasks})
    if len(modalities) > 1:
        which = ", ".join(f"{t.name}: {t.train.modality}" for t in tasks)
        raise TransferlabError(f"the tasks of a stream must be one kind of data, got {which}")
    return Stream("task", tasks, source={"stream": [str(r) if not isinstance(r, Dataset) else r.name for r in refs],
                                         **({"excluded": excluded} if excluded else {})})


def class_split(ref: Any, n_tasks: int, limit: int | None = None, test_limit: int | None = None) -> Stream:
    """Class-incremental: the dataset's classes, in order, split into ``n_tasks`` equal groups (one growing head)."""
    train, test = load_dataset(ref, "train"), load_dataset(ref, "test")
    c = train.num_classes
    if n_tasks < 2:
        raise TransferlabError(f"a stream needs at least two tasks, got {n_tasks}")
    if c % n_tasks:
        raise TransferlabError(f"{train.name} has {c} classes, which do not split into {n_tasks} equal groups; choose "
                               f"a divisor of {c} ({', '.join(str(k) for k in range(2, c + 1) if c % k == 0)})")
    train, test = _sample(train, limit, 0), _sample(test, test_limit, 0)
    per = c // n_tasks
    names = [str(n) for n in train.class_names]
    tasks = []
    for k in range(n_tasks):
        cls = list(range(k * per, (k + 1) * per))
        pick = lambda ds, cls=cls: ds.subset(np.flatnonzero(np.isin(ds.labels, cls)))  # noqa: E731
        tasks.append(Task(f"classes {'+'.join(names[i] for i in cls)}" if per <= 3 else f"classes {cls[0]}-{cls[-1]}",
                          pick(train), pick(test), cls, [names[i] for i in cls]))
    return Stream("class", tasks, names, {"split": f"{ref if not isinstance(ref, Dataset) else train.name}:{n_tasks}"})


def parse_stream(stream: str | Sequence[Any] | None = None, split: str | None = None, *, limit: int | None = None,
                 test_limit: int | None = None) -> Stream:
    """``stream``: comma-separated dataset references, a list of datasets, a YAML file (``tasks: [...]`` or
    ``split: REF`` with ``groups: K``), or ``builtin:stream-long`` (twelve tasks, ``_long``); ``split``: ``REF:K``
    (class-incremental; ``builtin:stream-long:12``: the long stream's tasks over one head)."""
    if (stream is None) == (split is None):
        raise TransferlabError("give either a task stream (--stream A,B,...) or a class split (--split DATA:K)")
    if split is not None:
        ref, sep, k = str(split).rpartition(":")
        if not sep or not k.isdigit() or not ref:
            raise TransferlabError(f"--split takes DATA:K (K groups of classes), got {split!r}")
        if _long().is_long(ref):
            return _long().long_split(ref, int(k), limit, test_limit)
        return class_split(ref, int(k), limit, test_limit)
    if isinstance(stream, str) and _long().is_long(stream):
        return _long().long_stream("task", limit, test_limit)
    if isinstance(stream, str) and stream.endswith((".yaml", ".yml")):
        return _yaml(Path(stream), limit, test_limit)
    refs = [s.strip() for s in stream.split(",") if s.strip()] if isinstance(stream, str) else list(stream or [])
    return task_stream(refs, limit, test_limit)


def _long() -> Any:
    from . import _long

    return _long


def _yaml(path: Path, limit: int | None, test_limit: int | None) -> Stream:
    """A stream file, validated strictly (unknown keys and wrong types are errors naming the key)."""
    import yaml
    from pydantic import ValidationError

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TransferlabError(f"cannot read the stream file {path}: {exc}") from None
    try:
        spec = StreamFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise TransferlabError(f"{path}: {where}: {first['msg']} (a stream file holds 'tasks': a list of datasets "
                               "or of {data: REF, name: NAME}; or 'split': REF with 'groups': K; and optionally "
                               "'limit', 'test_limit')") from None
    base = path.parent
    rel = lambda r: str(base / r) if ":" not in str(r) and not Path(str(r)).is_absolute() else str(r)  # noqa: E731
    limit = spec.limit if spec.limit is not None else limit
    test_limit = spec.test_limit if spec.test_limit is not None else test_limit
    if spec.split is not None:
        return class_split(rel(spec.split), spec.groups or 0, limit, test_limit)
    tasks = [t if isinstance(t, StreamTask) else StreamTask(data=t) for t in spec.tasks or []]
    names = [t.name or "" for t in tasks]
    return task_stream([rel(t.data) for t in tasks], limit, test_limit, names if any(names) else None)


class StreamTask(BaseModel):
    """One task of a stream file."""

    model_config = ConfigDict(extra="forbid")
    data: str = Field(description="the task's dataset reference (relative paths: to the stream file's folder)")
    name: str | None = Field(None, description="the task's name (default: the dataset's)")


class StreamFile(BaseModel):
    """A stream file: ``tasks`` (task-incremental) or ``split`` + ``groups`` (class-incremental)."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[str | StreamTask] | None = Field(None, min_length=1, description="the tasks, in order")
    split: str | None = Field(None, description="a dataset split into equal groups of classes")
    groups: int | None = Field(None, ge=2, description="how many groups (tasks) the split makes")
    limit: int | None = Field(None, ge=1, description="class-stratified training examples per task")
    test_limit: int | None = Field(None, ge=1, description="class-stratified test examples per task")

    @model_validator(mode="after")
    def _one_kind(self) -> StreamFile:
        if (self.tasks is None) == (self.split is None):
            raise ValueError("give either 'tasks' or 'split' (with 'groups')")
        if self.split is not None and self.groups is None:
            raise ValueError("'split' needs 'groups' (how many tasks)")
        return self
