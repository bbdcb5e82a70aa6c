"""Data without labels (to predict): which references and objects are unlabelled ``Inputs``, their identifiers and
order; labelled data still loads as ``load_dataset`` loads it."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import write_image_folder

from transferlab.data import Dataset, Inputs, load_dataset, load_inputs
from transferlab.errors import DataError


def _flat(tmp_path):
    src = write_image_folder(tmp_path / "src", n_per_class=2, classes=("a", "b"))
    flat = tmp_path / "new"
    (flat / "sub").mkdir(parents=True)
    (flat / ".hidden").mkdir()
    files = sorted(src.rglob("*.png"))
    for i, f in enumerate(files):
        (flat / ("sub" if i % 2 else "") / f"z{i}.png").write_bytes(f.read_bytes())
    (flat / ".hidden" / "x.png").write_bytes(files[0].read_bytes())
    (flat / "notes.txt").write_text("not an image")
    return flat


def test_a_flat_folder_is_read_recursively_in_path_order(tmp_path):
    flat = _flat(tmp_path)
    x = load_inputs(flat)
    assert isinstance(x, Inputs) and x.modality == "image"
    rel = [p.relative_to(flat).as_posix() for p in x.items]
    assert rel == ["sub/z1.png", "sub/z3.png", "z0.png", "z2.png"]  # hidden folders and non-images left out
    assert x.ids == [str(p) for p in x.items] and "read recursively in path order" in x.meta["order"]
    assert x.head(1).ids == x.ids[:1]


def test_labelled_references_load_as_before(tmp_path, image_folder):
    for split in ("train", "test"):
        a, b = load_inputs(image_folder, split), load_dataset(image_folder, split)
        assert isinstance(a, Dataset) and a.fingerprint == b.fingerprint
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"words {i},{'xy'[i % 2]}\n" for i in range(20)))
    a, b = load_inputs(csv), load_dataset(csv, "test")
    assert isinstance(a, Dataset) and a.fingerprint == b.fingerprint and a.meta["rows"] == b.meta["rows"]
    assert isinstance(load_inputs("builtin:digits"), Dataset)


def test_tables_without_labels(tmp_path, image_folder):
    paths = sorted(image_folder.rglob("*.png"))
    csv = tmp_path / "p.csv"
    csv.write_text("name,path\n" + "".join(f"n{i},{p}\n" for i, p in enumerate(paths)))
    x = load_inputs(csv)
    assert isinstance(x, Inputs) and x.modality == "image" and x.items == paths and x.ids == [str(p) for p in paths]
    assert load_inputs(csv, id_column="name").ids == [f"n{i}" for i in range(len(paths))]
    with pytest.raises(DataError, match="no column 'nope'.*--id-column"):
        load_inputs(csv, id_column="nope")
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"body": "one"}\n{"body": "two"}\n')
    x = load_inputs(jl, text_column="body")
    assert x.modality == "text" and x.items == ["one", "two"] and x.ids == ["0", "1"]
    with pytest.raises(DataError, match="no column 'text'.*--text-column"):
        load_inputs(jl)
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 8, 8, 3), np.uint8))
    x = load_inputs(tmp_path / "x.npz")
    assert isinstance(x, Inputs) and x.modality == "image" and len(x) == 3


def test_a_labelled_tables_id_column_follows_its_rows(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("key,text,label\n" + "".join(f"k{i},words {i},{'xy'[i % 2]}\n" for i in range(20)))
    ds = load_inputs(csv, "test", id_column="key")
    assert [f"k{t.split()[1]}" for t in ds.items] == ds.meta["ids"]
    sub = ds.subset([1, 0])
    assert sub.meta["ids"] == [ds.meta["ids"][1], ds.meta["ids"][0]]


def test_objects_in_memory(tmp_path, image_folder):
    x = load_inputs(np.zeros((4, 8, 8, 3), np.uint8))
    assert x.modality == "image" and x.ids == ["0", "1", "2", "3"]
    f = np.linspace(0, 1, 4 * 8 * 8).reshape(4, 8, 8)
    x = load_inputs(f, modality="image")  # floats in [0, 1] for an image model: images
    assert x.modality == "image" and x.items.dtype == np.uint8 and x.items.max() == 255
    assert load_inputs(f).modality == "array"  # features, without a model to say otherwise
    with pytest.raises(DataError, match="uint8 .* or floats in \\[0, 1\\]"):
        load_inputs(f * 300 + 0.5, modality="image")
    with pytest.raises(DataError, match="channels last"):
        load_inputs(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(DataError, match="NaN"):
        load_inputs(np.array([[0.0, np.nan]]))
    paths = sorted(image_folder.rglob("*.png"))[:3]
    assert load_inputs([str(p) for p in paths]).modality == "image"
    assert load_inputs(["a photo.png", "text"]).modality == "text"
    assert load_inputs(["cat.png", "b.jpg"], modality="text").items == ["cat.png", "b.jpg"]
    with pytest.raises(DataError, match="does not exist"):
        load_inputs([str(tmp_path / "gone.png")])
    with pytest.raises(DataError, match="empty"):
        load_inputs([])
    assert isinstance(load_inputs((np.zeros((4, 3)), [0, 1, 0, 1])), Dataset)  # (X, y): labelled, as before


def test_dataframes_without_labels(image_folder):
    pd = pytest.importorskip("pandas")
    paths = [str(p) for p in sorted(image_folder.rglob("*.png"))[:3]]
    x = load_inputs(pd.DataFrame({"path": paths}, index=[7, 8, 9]))
    assert isinstance(x, Inputs) and x.modality == "image" and x.ids == ["7", "8", "9"]
    assert isinstance(load_inputs(pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})), Dataset)
    assert load_inputs(pd.DataFrame({"text": ["a", "b"], "id": ["p", "q"]}), id_column="id").ids == ["p", "q"]


def test_hf_datasets_without_labels():
    datasets = pytest.importorskip("datasets")
    x = load_inputs(datasets.Dataset.from_dict({"text": ["a", "b"]}))
    assert isinstance(x, Inputs) and x.items == ["a", "b"]
