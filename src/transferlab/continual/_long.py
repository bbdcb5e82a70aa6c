"""``builtin:stream-long``: twelve tasks from the built-in image sets, after NEVIS'22 in spirit (Bornschein et al.,
2022: a long stream of related and unrelated vision tasks, where the compute to reach an accuracy is reported beside
it). The four built-in targets cut into class subsets (Fashion-MNIST and digits: classes 0-4, then 5-9; shapes and
textures: 0-2, then 3-5), so the stream comes back to a domain with new classes; the shifted variants (``digits-m``:
the digits in colour, ``shapes-sketch``: the shapes as outlines on clutter); and the pretraining-like sources
(``shapes-source``, ``textures-source``). No two tasks share a (set, class) pair: 57 classes in all.

- task-incremental (``--stream builtin:stream-long``): each task its own head over its own classes (0..C-1);
- class-incremental (``--split builtin:stream-long:12``): one head over the 57 classes, every (set, class) its own
  class ("digits 3" and "digits-m 3" are two classes), the tasks' classes in stream order.

``limit`` / ``test_limit`` take class-stratified samples of each task's splits (of the task's classes)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..data import Dataset, load_dataset
from ..errors import TransferlabError
from ._tasks import Stream, Task

NAME = "builtin:stream-long"
#: (task name, dataset, its classes in the task or None for all), in stream order
TASKS: tuple[tuple[str, str, tuple[int, ...] | None], ...] = (
    ("fashion-0-4", "builtin:fashion-mnist", (0, 1, 2, 3, 4)),
    ("digits-0-4", "builtin:digits", (0, 1, 2, 3, 4)),
    ("shapes-0-2", "builtin:shapes", (0, 1, 2)),
    ("textures-0-2", "builtin:textures", (0, 1, 2)),
    ("fashion-5-9", "builtin:fashion-mnist", (5, 6, 7, 8, 9)),
    ("digits-5-9", "builtin:digits", (5, 6, 7, 8, 9)),
    ("shapes-3-5", "builtin:shapes", (3, 4, 5)),
    ("textures-3-5", "builtin:textures", (3, 4, 5)),
    ("digits-m", "builtin:digits-m", None),
    ("shapes-sketch", "builtin:shapes-sketch", None),
    ("shapes-source", "builtin:shapes-source", None),
    ("textures-source", "builtin:textures-source", None),
)


@lru_cache(maxsize=32)
def _load(ref: str, split: str) -> Dataset:
    """A built-in set's split, loaded once per process (a set used by two tasks, and every run of a bench; the
    shifted variants are generated on load, seconds each)."""
    return load_dataset(ref, split)


def is_long(ref: object) -> bool:
    return str(ref).strip() == NAME


def _subset(ds: Dataset, classes: tuple[int, ...] | None, limit: int | None) -> Dataset:
    """The examples of ``classes`` (all: None), relabelled 0..C-1, sampled class-stratified to ``limit``."""
    cls = np.arange(ds.num_classes) if classes is None else np.asarray(classes)
    keep = np.flatnonzero(np.isin(ds.labels, cls))
    sub = Dataset(ds.name, ds.modality, ds.items[keep], np.searchsorted(cls, ds.labels[keep]),
                  tuple(ds.class_names[c] for c in cls), split=ds.split)
    return sub.stratified_sample(limit, seed=0) if limit and limit < len(sub) else sub


def _relabelled(ds: Dataset, offset: int, names: list[str]) -> Dataset:
    """``ds`` in the stream's label space: its labels moved by ``offset``, the stream's class ``names``."""
    return Dataset(ds.name, ds.modality, ds.items, ds.labels + offset, tuple(names), split=ds.split)


def long_stream(kind: str, limit: int | None = None, test_limit: int | None = None) -> Stream:
    """The twelve tasks, task-incremental (``kind="task"``) or class-incremental (``"class"``)."""
    if kind not in ("task", "class"):
        raise TransferlabError(f"{NAME} is task-incremental (--stream {NAME}) or class-incremental (--split "
                               f"{NAME}:{len(TASKS)}), not {kind!r}")
    parts = [(name, _subset(_load(ref, "train"), cls, limit), _subset(_load(ref, "test"), cls, test_limit), ref)
             for name, ref, cls in TASKS]
    if kind == "task":
        return Stream("task", [Task(n, tr, te, list(range(tr.num_classes)), list(tr.class_names))
                               for n, tr, te, _ in parts], source={"stream": NAME})
    names = [f"{ref.split(':', 1)[1]} {c}" for _, tr, _, ref in parts for c in tr.class_names]
    tasks, off = [], 0
    for n, tr, te, _ in parts:
        c = tr.num_classes
        tasks.append(Task(n, _relabelled(tr, off, names), _relabelled(te, off, names), list(range(off, off + c)),
                          names[off: off + c]))
        off += c
    return Stream("class", tasks, names, {"split": f"{NAME}:{len(TASKS)}"})


def long_split(ref: str, k: int, limit: int | None, test_limit: int | None) -> Stream:
    """``--split builtin:stream-long:K``: K must be the stream's twelve tasks."""
    if k != len(TASKS):
        raise TransferlabError(f"{ref} has {len(TASKS)} fixed tasks: give --split {ref}:{len(TASKS)}, not {k}")
    return long_stream("class", limit, test_limit)
