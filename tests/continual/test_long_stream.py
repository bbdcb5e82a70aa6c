"""``builtin:stream-long`` (issue 31): twelve tasks from the built-in sets, task- and class-incremental."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.continual import parse_stream
from transferlab.data import Dataset
from transferlab.errors import TransferlabError


@pytest.fixture
def small_sets(monkeypatch):
    """Each built-in set as a few random images per class (the real ones take ~15 s to generate on a busy CPU; the
    slow test below reads them)."""
    from transferlab.continual import _long

    names = {ref for _, ref, _ in _long.TASKS}
    sizes = {"builtin:fashion-mnist": 10, "builtin:digits": 10, "builtin:shapes": 6, "builtin:textures": 6,
             "builtin:digits-m": 10, "builtin:shapes-sketch": 6, "builtin:shapes-source": 5,
             "builtin:textures-source": 4}
    assert set(names) == set(sizes)

    def fake(ref, split):
        c = sizes[ref]
        rng = np.random.default_rng(len(ref))
        return Dataset(ref.split(":")[1], "image", rng.integers(0, 255, (6 * c, 8, 8), dtype=np.uint8),
                       np.tile(np.arange(c), 6), tuple(f"{ref[8:11]}{k}" for k in range(c)), split=split)

    monkeypatch.setattr(_long, "_load", fake)


def test_the_long_stream_has_twelve_tasks_of_distinct_classes_in_both_kinds(small_sets):
    _check_long(limit=40, test_limit=20)


@pytest.mark.slow
def test_the_long_stream_of_the_real_sets():
    _check_long(limit=40, test_limit=20)


def _check_long(limit: int, test_limit: int) -> None:
    t = parse_stream("builtin:stream-long", limit=limit, test_limit=test_limit)
    c = parse_stream(split="builtin:stream-long:12", limit=limit, test_limit=test_limit)
    assert t.kind == "task" and c.kind == "class" and len(t.tasks) == len(c.tasks) == 12
    assert [x.name for x in t.tasks] == [x.name for x in c.tasks]
    # task-incremental: each task's labels are its own 0..C-1; class-incremental: disjoint global ids, 57 in all
    for x in t.tasks:
        assert set(np.unique(x.train.labels)) == set(x.classes) == set(range(len(x.class_names)))
    ids = [k for x in c.tasks for k in x.classes]
    assert ids == list(range(57)) and len(set(c.class_names)) == 57
    for x, y in zip(t.tasks, c.tasks, strict=True):
        assert set(np.unique(y.train.labels)) == set(y.classes) and set(np.unique(y.test.labels)) <= set(y.classes)
        assert np.array_equal(y.train.labels - y.classes[0], x.train.labels)  # the same examples, moved labels
        assert len(x.train) <= limit and len(x.test) <= test_limit
    # the class subsets: fashion 0-4 then 5-9 are different classes of one set
    assert t.tasks[4].class_names[0] == c.class_names[16].split(" ", 1)[1] != t.tasks[0].class_names[0]
    assert c.class_names[5].startswith("digits ") and c.class_names[32].startswith("digits-m ")


def test_the_long_split_has_its_fixed_number_of_tasks():
    with pytest.raises(TransferlabError, match=r"12 fixed tasks: give --split builtin:stream-long:12"):
        parse_stream(split="builtin:stream-long:5")
