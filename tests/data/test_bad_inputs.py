"""Bad data is one clear DataError (issue 11): never a class named "None", never a silent drop, never a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from transferlab.data import load_dataset
from transferlab.errors import DataError


def _images(root: Path, names: list[str]) -> None:
    from PIL import Image

    for i, n in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), (25 * i) % 256, np.uint8)).save(root / n)


def test_csv_rows_without_a_label_are_refused_with_their_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("text,label\nhello there,a\nshort row without label\nfine,b\nalso short\n")
    with pytest.raises(DataError, match=r"t.csv: rows 3, 5 have no label"):
        load_dataset(p)


def test_image_csv_rows_without_a_label_are_refused(tmp_path: Path) -> None:
    _images(tmp_path, ["a.png", "b.png"])
    p = tmp_path / "i.csv"
    p.write_text("path,label\na.png,x\nb.png\n")
    with pytest.raises(DataError, match=r"row 3 has no label"):
        load_dataset(p)


def test_missing_images_are_warned_with_count_and_paths(tmp_path: Path, caplog) -> None:
    _images(tmp_path, [f"{c}{i}.png" for c in "ab" for i in range(5)])
    rows = ["path,label"] + [f"{c}{i}.png,{c}" for c in "ab" for i in range(5)] + ["gone1.png,a", "gone2.png,b"]
    p = tmp_path / "i.csv"
    p.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        train = load_dataset(p, "train")
        test = load_dataset(p, "test")
    assert train.meta["skipped"] + test.meta["skipped"] == 2
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "missing" in msgs and "gone" in msgs
    with pytest.raises(DataError, match="does not exist"):
        _strict_both(p)


def test_an_error_about_many_rows_stays_short(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("text,label\n" + "".join(f"text {i}\n" for i in range(10_000)))
    with pytest.raises(DataError) as e:
        load_dataset(p)
    assert len(str(e.value)) < 200 and "and 9995 more" in str(e.value)


@pytest.mark.parametrize("line, message", [
    ("[1, 2]", "line 2 is a JSON list, not an object"),
    ('"just text"', "line 2 is a JSON str, not an object"),
    ('{"text": "no label here"}', "row 2 has no label"),
    ('{"label": "a"}', "row 2 has no 'text' field"),
])
def test_bad_jsonl_lines(tmp_path: Path, line: str, message: str) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"text": "fine", "label": "a"}) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset(p)


def test_all_empty_texts_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("text,label\n,a\n  ,b\n,a\n")
    with pytest.raises(DataError, match="every text in column 'text' is empty"):
        load_dataset(p)


@pytest.mark.parametrize("x, message", [
    (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), "NaN or infinite values in 1 row"),
    (np.array([["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]]), "it must be numeric"),
])
def test_npz_with_nan_or_strings_is_refused(tmp_path: Path, x: np.ndarray, message: str) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=message):
        load_dataset(p)


def test_random_bytes_are_not_a_valid_npz_and_no_pickle_hint(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="not a valid NPZ file") as e:
        load_dataset(p)
    assert "pickle" not in str(e.value)
    good = tmp_path / "g.npz"
    np.savez(good, x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match="damaged"):
        load_dataset(good)


def test_decompression_bomb_is_an_unreadable_image(tmp_path: Path, monkeypatch, caplog) -> None:
    from PIL import Image

    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        _images(root / c, [f"{i}.png" for i in range(4)])
    Image.new("L", (300, 300)).save(root / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 300 x 300 > 2 x the limit: PIL refuses to open it
    with caplog.at_level(logging.WARNING):
        n = sum(len(load_dataset(root, s)) for s in ("train", "test"))
    assert n == 8 and "unreadable" in caplog.text
    with pytest.raises(DataError, match="corrupt or unreadable"):
        _strict_both(root)


def _strict_both(ref: Path) -> None:
    """The bad file falls in one of the two splits: loading both strictly must fail."""
    for s in ("train", "test"):
        load_dataset(ref, s, strict=True)


def test_fit_on_a_truncated_jpeg_is_a_data_error(tmp_path: Path) -> None:
    """The loader's verify() lets some truncated JPEGs through; decoding them in fit is one clear error."""
    from PIL import Image

    from transferlab.data import Dataset
    from transferlab.models._inputs import ImageTensors

    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p, quality=95)
    p.write_bytes(p.read_bytes()[:600])
    ds = Dataset("t", "image", [p], np.array([0]), ("a",), "train", {})
    with pytest.raises(DataError, match=r"cannot decode image .*t.jpg.*remove or fix it"):
        ImageTensors(ds, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))[0]
