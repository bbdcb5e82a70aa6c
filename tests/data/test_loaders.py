import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from transferlab.data import check_rankable, list_builtin_datasets, load_dataset
from transferlab.data._dataset import Dataset
from transferlab.errors import DataError, TransferlabError


# ------------------------------------------------------------------------------------------------------ built-ins
def test_builtin_fashion_mnist_is_the_stratified_subset():
    tr, te = load_dataset("builtin:fashion-mnist", "train"), load_dataset("builtin:fashion-mnist", "test")
    assert len(tr) == 2000 and len(te) == 1000
    assert tr.items.shape == (2000, 28, 28) and tr.items.dtype == np.uint8
    assert (tr.class_counts() == 200).all() and (te.class_counts() == 100).all()
    assert tr.class_names[0] == "t-shirt/top" and tr.class_names[9] == "ankle boot"
    assert tr.fingerprint != te.fingerprint


def test_builtin_digits_split_is_stable_and_disjoint():
    a, b = load_dataset("builtin:digits", "train"), load_dataset("builtin:digits", "test")
    assert len(a) + len(b) == 1797
    assert load_dataset("builtin:digits", "train").fingerprint == a.fingerprint
    rows_a = {r.tobytes() + bytes([lab]) for r, lab in zip(a.items, a.labels, strict=True)}
    rows_b = {r.tobytes() + bytes([lab]) for r, lab in zip(b.items, b.labels, strict=True)}
    assert len(rows_a & rows_b) <= 2  # load_digits has a few exact duplicates; splits are otherwise disjoint
    assert 0.18 < len(b) / 1797 < 0.22


def test_builtin_rotten_tomatoes_text():
    tr = load_dataset("builtin:rotten-tomatoes")
    te = load_dataset("builtin:rotten-tomatoes", "test")
    assert tr.modality == "text" and tr.class_names == ("fresh", "plot", "rotten")
    assert len(tr) + len(te) == 5022
    assert not set(tr.items[:200]) & set(te.items)


def test_unknown_builtin_lists_known():
    with pytest.raises(DataError, match="builtin:fashion-mnist"):
        load_dataset("builtin:imagenet")
    assert "fashion-mnist" in list_builtin_datasets()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_committed_fashion_subset_matches_the_debian_package():
    """The committed subset is exactly what scripts/make_builtin_datasets.py makes from the Debian files."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_builtin_datasets.py"
    spec = importlib.util.spec_from_file_location("mkds", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = Path("/usr/share/datasets/fashion-mnist")
    labels = mod.read_idx(src / "train-labels-idx1-ubyte.gz")
    images = mod.read_idx(src / "train-images-idx3-ubyte.gz")
    tr = load_dataset("builtin:fashion-mnist")
    with np.load(mod.ASSETS / "fashion_mnist_subset.npz") as z:
        idx = z["source_index_train"]
    np.testing.assert_array_equal(images[idx], tr.items)
    np.testing.assert_array_equal(labels[idx], tr.labels)


# -------------------------------------------------------------------------------------------------- image folders
def test_image_folder_split_is_stratified_stable_and_disjoint(image_folder):
    tr, te = load_dataset(image_folder, "train"), load_dataset(image_folder, "test")
    assert tr.class_names == ("cat", "dog", "owl")
    assert len(tr) + len(te) == 18
    assert set(tr.items).isdisjoint(te.items)
    assert (te.class_counts() >= 1).all()
    # adding a file does not move the others between splits
    from PIL import Image

    Image.new("RGB", (20, 20), (9, 9, 9)).save(image_folder / "cat" / "zz_new.png")
    tr2 = load_dataset(image_folder, "train")
    assert set(tr.items) <= set(tr2.items)


def test_explicit_train_test_folders(tmp_path):
    from tests.conftest import write_image_folder

    write_image_folder(tmp_path / "ds" / "train", n_per_class=3)
    write_image_folder(tmp_path / "ds" / "test", n_per_class=2)
    assert len(load_dataset(tmp_path / "ds", "train")) == 9
    assert len(load_dataset(tmp_path / "ds", "test")) == 6


def test_fingerprint_follows_content_not_names(image_folder, tmp_path):
    fp = load_dataset(image_folder).fingerprint
    copy = shutil.copytree(image_folder, tmp_path / "renamed")
    assert load_dataset(copy).fingerprint == fp
    victim = sorted((copy / "dog").iterdir())[0]
    from PIL import Image

    Image.new("RGB", (20, 20), (1, 2, 3)).save(victim)
    assert load_dataset(copy).fingerprint != fp


def test_image_csv(image_folder, tmp_path):
    rows = ["path,label"] + [f"{p.relative_to(image_folder).as_posix()},{p.parent.name}"
                             for p in sorted(image_folder.rglob("*.png"))]
    csv = image_folder / "index.csv"
    csv.write_text("\n".join(rows))
    ds = load_dataset(csv)
    assert ds.modality == "image" and ds.class_names == ("cat", "dog", "owl")


def test_corrupt_image_is_skipped_with_count_or_fails_when_strict(image_folder, caplog):
    (image_folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    full = len(load_dataset(image_folder, "train")) + len(load_dataset(image_folder, "test"))
    assert full == 18  # the broken file is not counted in either split
    caplog.clear()
    ds_all = [load_dataset(image_folder, s) for s in ("train", "test")]
    skipped = sum(d.meta["skipped"] for d in ds_all)
    assert skipped == 1
    assert any("skipped 1 image(s) (1 unreadable)" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match=r"broken\.png.*corrupt or unreadable.*--strict"):
        for s in ("train", "test"):
            load_dataset(image_folder, s, strict=True)


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(tmp_path / "noimg")


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")


# ------------------------------------------------------------------------------------------------------------ text
def test_text_csv_with_configurable_columns_and_split_column(tmp_path):
    p = tmp_path / "tickets.csv"
    p.write_text("body,topic,split\n" + "\n".join(
        f"ticket number {i},{'billing' if i % 2 else 'bug'},{'test' if i % 5 == 0 else 'train'}" for i in range(40)))
    tr = load_dataset(p, text_column="body", label_column="topic")
    te = load_dataset(p, "test", text_column="body", label_column="topic")
    assert tr.modality == "text" and tr.class_names == ("billing", "bug")
    assert len(tr) == 32 and len(te) == 8


def test_csv_missing_label_column_names_columns_and_flag(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("text,category\nhello,a\nworld,b\n")
    with pytest.raises(DataError, match=r"no column 'label' \(columns: text, category\).*--label-column"):
        load_dataset(p)


def test_jsonl(tmp_path):
    p = tmp_path / "faq.jsonl.gz"
    with gzip.open(p, "wt") as fh:
        for i in range(30):
            fh.write(json.dumps({"text": f"question {i}", "label": i % 3}) + "\n")
    tr, te = load_dataset(p), load_dataset(p, "test")
    assert tr.class_names == ("0", "1", "2") and len(tr) + len(te) == 30


def test_empty_csv(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("text,label\n")
    with pytest.raises(DataError, match="empty"):
        load_dataset(p)


# ------------------------------------------------------------------------------------------------------------- npz
def test_npz_arrays_and_mismatch(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 4))
    np.savez(tmp_path / "ok.npz", x=x, y=np.arange(50) % 2)
    ds = load_dataset(tmp_path / "ok.npz")
    assert ds.modality == "array" and ds.items.shape[1] == 4
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(49) % 2)
    with pytest.raises(DataError, match=r"'x' has 50 rows but 'y' has 49 labels"):
        load_dataset(tmp_path / "bad.npz")
    np.savez(tmp_path / "nolab.npz", x=x)
    with pytest.raises(DataError, match="no labels"):
        load_dataset(tmp_path / "nolab.npz")


# ---------------------------------------------------------------------------------------------- rankability checks
def _ds(labels, names=("a", "b", "c")):
    labels = np.asarray(labels)
    return Dataset("t", "array", np.zeros((len(labels), 2)), labels, names)


def test_check_rankable_rejects_one_class_single_examples_and_n_below_c():
    with pytest.raises(DataError, match="single class"):
        check_rankable(_ds([0, 0, 0]))
    with pytest.raises(DataError, match=r"1 class\(es\) have a single example \('c'\)"):
        check_rankable(_ds([0, 0, 1, 1, 2]))
    with pytest.raises(DataError, match="N < C"):
        check_rankable(_ds([0, 1], names=tuple("abcdef")))
    check_rankable(_ds([0, 0, 1, 1, 2, 2]))


def test_empty_dataset_is_rejected():
    with pytest.raises(TransferlabError, match="empty"):
        Dataset("t", "array", np.zeros((0, 2)), np.zeros(0, dtype=int), ("a",))


def test_stratified_sample_keeps_classes_and_size():
    ds = load_dataset("builtin:fashion-mnist")
    s = ds.stratified_sample(300, seed=0)
    assert len(s) == 300 and (s.class_counts() == 30).all()
    assert s.fingerprint == ds.stratified_sample(300, seed=0).fingerprint
    with pytest.raises(DataError, match="too small"):
        ds.stratified_sample(5)
