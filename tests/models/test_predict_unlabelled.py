"""Prediction on data without labels: every input kind (a flat folder, a path list, arrays, PIL images, a CSV, an
NPZ, a DataFrame; texts for a text model) gives the labelled path's probabilities for the same inputs; labels come
back as the model's class names; ``evaluate`` without labels is one error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tests.conftest import make_text_dataset, write_image_folder

from transferlab.data import Dataset
from transferlab.errors import DataError, TransferlabError
from transferlab.models import Predictor, evaluate, predict

CLASSES = ("Cat", "dog", "10")  # strings as given; "10" must not come back as a number


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_timm_weights):
    from transferlab.fit import fit

    d = tmp_path_factory.mktemp("fitted")
    train = write_image_folder(d / "train", n_per_class=4, classes=CLASSES)
    fit(str(train), f"timm:test_efficientnet@{tiny_timm_weights}", "head", epochs=1, image_size=32, out=d / "m")
    new = write_image_folder(d / "new", n_per_class=3, classes=CLASSES, size=24)  # other images, another size
    paths = sorted(new.rglob("*.png"))
    return d / "m", paths


def _labelled(paths):
    return Dataset.from_images(paths, [p.parent.name for p in paths], name="new")


def test_every_input_kind_gives_the_labelled_probabilities(fitted, tmp_path):
    out, paths = fitted
    _, want, card = predict(out, _labelled(paths))  # the labelled path, as before
    assert want.shape == (len(paths), 3) and np.ptp(want[:, 0]) > 0  # the inputs are told apart
    flat = tmp_path / "flat"
    (flat / "more").mkdir(parents=True)
    for i, p in enumerate(paths):  # one level down for half of them: read recursively, in path order
        (flat / ("more" if i % 2 else "") / f"{i:02d}.png").write_bytes(p.read_bytes())
    arr = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    csv = tmp_path / "new.csv"
    csv.write_text("path\n" + "".join(f"{p}\n" for p in paths))
    np.savez(tmp_path / "x.npz", x=arr)
    P = Predictor(out)
    got = P.predictions(flat)
    order = [int(s.rsplit("/", 1)[-1][:2]) for s in got.ids]
    assert sorted(order) == list(range(len(paths))) and order != sorted(order)
    np.testing.assert_allclose(got.proba, want[order], atol=1e-6)
    inputs = {"array": arr, "floats in [0, 1]": arr / 255.0, "paths": [str(p) for p in paths], "Paths": paths,
              "PIL": [Image.open(p) for p in paths], "csv": csv, "npz": tmp_path / "x.npz"}
    for kind, x in inputs.items():
        np.testing.assert_allclose(P.predict_proba(x), want, atol=1e-6, err_msg=kind)
    for kind, x in (("array", arr), ("csv", str(csv))):  # predict() takes them too, same return
        idx, p, _ = predict(out, x)
        np.testing.assert_allclose(p, want, atol=1e-6, err_msg=kind)
        assert (idx == want.argmax(1)).all()
    try:
        import pandas as pd
    except ImportError:
        return
    np.testing.assert_allclose(P.predict_proba(pd.DataFrame({"path": [str(p) for p in paths]})), want, atol=1e-6)


def test_labels_come_back_as_the_class_names(fitted):
    out, paths = fitted
    P = Predictor(out)
    assert list(P.classes_) == sorted(CLASSES) and P.classes_.dtype.kind == "U"
    proba = P.predict_proba(paths)
    labels = P.predict(paths)
    assert list(labels) == [sorted(CLASSES)[k] for k in proba.argmax(1)]
    assert all(isinstance(v, str) for v in labels.tolist())
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert P.score(_labelled(paths)) == pytest.approx(np.mean(labels == np.array([p.parent.name for p in paths])))
    assert P.score(paths, [p.parent.name for p in paths]) == P.score(_labelled(paths))
    with pytest.raises(DataError, match="score needs labels"):
        P.score(paths)


def test_evaluate_refuses_data_without_labels(fitted, tmp_path):
    out, paths = fitted
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, p in enumerate(paths):
        (flat / f"{i}.png").write_bytes(p.read_bytes())
    for x in (flat, np.stack([np.asarray(Image.open(p)) for p in paths])):
        with pytest.raises(DataError, match="evaluate needs labels.*use predict"):
            evaluate(out, x)
    assert evaluate(out, _labelled(paths))["n"] == len(paths)  # labelled: as before


def test_a_model_refuses_inputs_of_another_kind(fitted):
    out, _ = fitted
    with pytest.raises(TransferlabError, match="takes image data.*numeric arrays"):
        Predictor(out).predict(np.zeros((2, 5), np.float32))
    with pytest.raises(DataError, match="image '.*some words' does not exist"):  # strings are paths to it
        Predictor(out).predict(["some words", "more words"])


def test_a_text_model_predicts_lists_tables_and_frames(tmp_path, tiny_text_ref):
    from transferlab.fit import fit

    train = make_text_dataset(8)
    fit(train, tiny_text_ref, "head", epochs=1, max_length=32, out=tmp_path / "m")
    test = make_text_dataset(4, split="test", seed=1)
    texts = list(test.items)
    texts[0] = "look at the photo.png"  # a text model reads it as a text, not a path
    labelled = Dataset("t", "text", texts, test.labels, test.class_names, "test")
    _, want, _ = predict(tmp_path / "m", labelled)
    P = Predictor(tmp_path / "m")
    np.testing.assert_allclose(P.predict_proba(texts), want, atol=1e-6)
    jl = tmp_path / "new.jsonl"
    import json

    jl.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    got = Predictor(tmp_path / "m", id_column="id").predictions(jl)
    np.testing.assert_allclose(got.proba, want, atol=1e-6)
    assert got.ids == [f"t{i}" for i in range(len(texts))] and got.labels is None
    assert set(P.predict(texts)) <= set(train.class_names)
