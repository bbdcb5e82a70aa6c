"""No NaN reaches a JSON writer (issue 29): an undefined number is written as null, and the run that produced it is
not lost to `ValueError: Out of range float values are not JSON compliant`."""

from __future__ import annotations

import json
import math

import numpy as np

from transferlab._io import json_text, write_json_atomic


def test_non_finite_numbers_are_written_as_null(tmp_path):
    obj = {"score": float("nan"), "history": [{"dev": float("inf"), "acc": 0.5}], "arr": np.array([1.0, np.nan]),
           "np": np.float32("nan"), "ok": 1}
    write_json_atomic(tmp_path / "m.json", obj)
    back = json.loads((tmp_path / "m.json").read_text())
    assert back == {"score": None, "history": [{"dev": None, "acc": 0.5}], "arr": [1.0, None], "np": None, "ok": 1}
    assert "NaN" not in json_text(obj) and "Infinity" not in json_text(obj)


def test_a_finite_document_is_written_as_before():
    obj = {"a": [1.0, 2.5], "b": {"c": "x", "d": None}, "e": math.pi}
    assert json_text(obj) == json.dumps(obj, indent=2, allow_nan=False)
    assert json_text(obj, indent=None, sort_keys=True) == json.dumps(obj, sort_keys=True)
