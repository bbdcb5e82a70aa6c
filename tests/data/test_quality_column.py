"""The user quality column (transferlab.data._quality): read from image CSVs, text CSV/JSONL, NPZ and unlabelled
tables, refused outside [0, 1], and kept item by item through every split, subset and stratified sample (each
item's value checked against the hand-written table)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferlab.data import Dataset, load_dataset, load_inputs, split_validation
from transferlab.errors import DataError


def _image_csv(root: Path, quality: dict[str, str], split: bool = True) -> Path:
    from PIL import Image

    rows = ["path,label,quality" + (",split" if split else "")]
    for i, (name, q) in enumerate(quality.items()):
        Image.fromarray(np.full((6, 6, 3), 20 * i, dtype=np.uint8)).save(root / name)
        rows.append(f"{name},{'ab'[i % 2]},{q}" + (f",{'test' if i >= 8 else 'train'}" if split else ""))
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


#: the hand-written column: image -> quality
HAND = {f"im{i}.png": q for i, q in enumerate(["0", "0.25", "1", "0.5", "0.125", "0.75", "1.0", "0.0", "0.375", "0.875"])}


def _by_item(ds: Dataset) -> dict[str, float]:
    return {Path(p).name: float(q) for p, q in zip(ds.items, ds.meta["quality"], strict=True)}


def test_an_image_csv_keeps_each_rows_quality_through_every_split(tmp_path: Path):
    csv = _image_csv(tmp_path, HAND)
    train, test = load_dataset(csv, "train"), load_dataset(csv, "test")
    assert _by_item(train) == {k: float(v) for k, v in list(HAND.items())[:8]}
    assert _by_item(test) == {"im8.png": 0.375, "im9.png": 0.875}
    assert train.meta["quality"].dtype == np.float32
    fit_part, val = split_validation(train, 0.25, seed=0)
    sample = train.stratified_sample(4, seed=1)
    sub = train.subset([7, 2, 5])
    for part in (fit_part, val, sample, sub):
        assert _by_item(part) == {k: float(HAND[k]) for k in _by_item(part)}  # the same item, the same value
    assert [float(q) for q in sub.meta["quality"]] == [0.0, 1.0, 0.75]  # im7, im2, im5 in the order asked
    assert len(fit_part) + len(val) == 8 and len(sample) == 4


def test_text_tables_and_npz_carry_the_column(tmp_path: Path):
    rows = [{"text": f"t{i}", "label": "xy"[i % 2], "quality": i / 10, "split": "train"} for i in range(6)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(tmp_path / "t.jsonl")
    assert dict(zip(ds.items, ds.meta["quality"].tolist(), strict=True)) == pytest.approx(
        {f"t{i}": i / 10 for i in range(6)})
    x = np.zeros((4, 5, 5), np.uint8)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=[0, 1, 0, 1], quality_train=[0.1, 0.2, 0.3, 0.4],
             x_test=x[:2], y_test=[0, 1])
    assert load_dataset(tmp_path / "a.npz").meta["quality"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert "quality" not in load_dataset(tmp_path / "a.npz", "test").meta  # no quality_test: no column


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "high", "", "nan"])
def test_a_quality_outside_zero_one_is_refused_with_its_row(tmp_path: Path, bad: str):
    csv = _image_csv(tmp_path, {**HAND, "im3.png": bad})
    with pytest.raises(DataError, match=r"row 5 has no quality in \[0, 1\]"):  # im3 is on line 5 of the file
        load_dataset(csv)


def test_a_column_of_the_wrong_length_is_refused():
    with pytest.raises(DataError, match="3 quality values for 2 examples"):
        Dataset("d", "array", np.zeros((2, 3)), np.array([0, 1]), ("a", "b"), meta={"quality": [0.1, 0.2, 0.3]})


def test_unlabelled_tables_carry_the_column_and_head_cuts_it(tmp_path: Path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((6, 6, 3), 50 * i, dtype=np.uint8)).save(tmp_path / f"u{i}.png")
    (tmp_path / "u.csv").write_text("path,quality\nu0.png,0.2\nu1.png,1\nu2.png,0\n")
    inputs = load_inputs(tmp_path / "u.csv")
    assert inputs.meta["quality"].tolist() == pytest.approx([0.2, 1.0, 0.0])
    assert inputs.head(2).meta["quality"].tolist() == pytest.approx([0.2, 1.0])


def test_a_label_column_named_quality_is_the_labels_not_a_quality_column(tmp_path: Path):
    """A wine-quality table: 'quality' is the class (3..9) asked for with --label-column, never read as [0, 1]."""
    (tmp_path / "wine.csv").write_text("text,quality,split\n" + "".join(
        f"wine {i},{3 + 2 * (i % 3)},{'test' if i >= 6 else 'train'}\n" for i in range(9)))
    ds = load_dataset(tmp_path / "wine.csv", "train", label_column="quality")
    assert ds.class_names == ("3", "5", "7") and "quality" not in ds.meta
