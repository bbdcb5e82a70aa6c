"""A dataset manifest whose source is itself, or a loop of two, is one DataError naming the loop (issue 29: it was a
RecursionError)."""

from __future__ import annotations

import json

import pytest

from transferlab.data import MANIFEST, load_dataset
from transferlab.errors import DataError


def _manifest(folder, source):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps({"format": 1, "kind": "class_subset", "source": source,
                                               "classes": ["a"]}))
    return folder


def test_a_manifest_that_names_itself_is_one_error(tmp_path):
    d = _manifest(tmp_path / "self", ".")
    with pytest.raises(DataError, match="its source leads back to itself"):
        load_dataset(str(d), "train")


def test_a_loop_of_two_manifests_is_one_error(tmp_path):
    a = _manifest(tmp_path / "a", "../b")
    _manifest(tmp_path / "b", "../a")
    with pytest.raises(DataError, match=r"leads back to itself \(.*a.* -> .*b.* -> .*a"):
        load_dataset(str(a), "train")


def test_a_manifest_of_a_manifest_still_loads(tmp_path):
    from tests.conftest import write_image_folder

    write_image_folder(tmp_path / "data", n_per_class=4)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / MANIFEST).write_text(json.dumps({"format": 1, "kind": "class_subset", "source": "../data",
                                              "classes": ["cat", "dog"]}))
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / MANIFEST).write_text(json.dumps({"format": 1, "kind": "class_subset", "source": "../inner",
                                              "classes": ["dog"]}))
    assert list(load_dataset(str(outer), "train").class_names) == ["dog"]
