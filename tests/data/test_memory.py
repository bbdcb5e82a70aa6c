"""Data in memory (issue 12): numpy arrays, texts, PIL images, a DataFrame, a torch Dataset go straight into rank,
fit, predict and evaluate, through documented Dataset.from_* constructors."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.data import Dataset, load_dataset
from transferlab.errors import DataError


def _digits(n: int = 120):
    ds = load_dataset("builtin:digits").stratified_sample(n)
    return ds.items, ds.labels


def test_arrays_texts_and_images():
    x, y = _digits()
    d = Dataset.from_arrays(x, y)
    assert d.modality == "image" and len(d) == 120 and d.class_names == tuple(str(i) for i in range(10))
    f = Dataset.from_arrays(np.random.default_rng(0).standard_normal((10, 4)), ["b", "a"] * 5)
    assert f.modality == "array" and f.class_names == ("a", "b") and list(f.labels[:2]) == [1, 0]
    t = Dataset.from_texts(["good film", "bad film"] * 3, ["pos", "neg"] * 3)
    assert t.modality == "text" and t.class_names == ("neg", "pos")
    from PIL import Image

    ims = [Image.fromarray(np.full((8, 8), 20 * i, np.uint8)) for i in range(6)]
    im = Dataset.from_images(ims, [0, 1] * 3)
    assert im.items.shape == (6, 8, 8, 3) and im.modality == "image"
    with pytest.raises(DataError, match="different sizes"):
        Dataset.from_images([*ims, Image.new("L", (9, 9))], [0, 1] * 3 + [0])
    with pytest.raises(DataError, match="NaN"):
        Dataset.from_arrays(np.array([[np.nan], [1.0]]), [0, 1])


def test_pandas():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"text": ["a good film", "a bad film"] * 4, "label": ["pos", "neg"] * 4})
    d = Dataset.from_pandas(df)
    assert d.modality == "text" and len(d) == 8 and load_dataset(df).class_names == ("neg", "pos")
    with pytest.raises(DataError, match="no label"):
        Dataset.from_pandas(pd.DataFrame({"text": ["x", "y"], "label": ["a", None]}))


def test_torch_dataset():
    import torch

    class Tiny(torch.utils.data.Dataset):
        classes = ["zero", "one"]

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((1, 8, 8), i / 10.0), i % 2

    t = Dataset.from_torch(Tiny())
    assert t.modality == "image" and t.items.shape == (6, 8, 8, 1) and t.class_names == ("zero", "one")
    assert t.items[3, 0, 0, 0] == 76  # 0.3 * 255, rounded
    assert load_dataset(Tiny()).class_names == ("zero", "one")  # every loader entry point takes it


def test_rank_fit_predict_evaluate_take_data_in_memory(tiny_model_ref, tmp_path):
    from transferlab.fit import fit
    from transferlab.models import evaluate, predict
    from transferlab.rank import rank

    x, y = _digits(150)
    r = rank((x, y), "builtin:pixels", "knn,logme", cache_dir=tmp_path / "c")
    assert r.dataset["size"] == 150
    tx, ty = load_dataset("builtin:digits", "test").items[:40], load_dataset("builtin:digits", "test").labels[:40]
    res = fit((x, y), tiny_model_ref, "head", test=(tx, ty), out=tmp_path / "m", epochs=1, image_size=32)
    assert res.metrics["n_test"] == 40 and res.metrics["test_accuracy"] is not None
    pred, probs, _ = predict(res, (tx, ty))  # a FitResult, and arrays
    assert pred.shape == (40,) and probs.shape == (40, 10)
    assert evaluate(res, (tx, ty))["accuracy"] == pytest.approx(float(np.mean(pred == ty)))
    no_test = fit((x, y), tiny_model_ref, "head", epochs=1, image_size=32)  # data in memory has no test split
    assert no_test.metrics["test_accuracy"] is None


def test_something_that_is_not_data_says_what_is_accepted():
    with pytest.raises(DataError, match=r"cannot use a dict as a dataset: .*\(X, y\) arrays"):
        load_dataset({"x": 1})
