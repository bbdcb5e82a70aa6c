"""A fit killed after a checkpoint resumes in the same --out only on the same data: other examples, labels or a
changed quality column are refused with a clear error (the checkpoint was trained on something else)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import die_after_first_checkpoint

from transferlab.data import Dataset, load_dataset, training_fingerprint
from transferlab.errors import TransferlabError


def _killed_fit(monkeypatch, train, ref, out):
    from transferlab.fit import fit
    from transferlab.train import _loop

    real = die_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        fit(train, ref, "head", out=out, epochs=2, image_size=32)
    monkeypatch.setattr(_loop, "save_checkpoint", real)


def _with_quality(ds, q):
    return Dataset(ds.name, ds.modality, ds.items, ds.labels, ds.class_names, ds.split, {**ds.meta, "quality": q})


def test_training_fingerprint_sees_the_quality_column_the_dataset_fingerprint_leaves_out():
    ds = load_dataset("builtin:digits", "train").stratified_sample(40, seed=0)
    a, b = _with_quality(ds, np.ones(40, np.float32)), _with_quality(ds, np.linspace(0, 1, 40, dtype=np.float32))
    assert a.fingerprint == b.fingerprint == ds.fingerprint
    assert len({training_fingerprint(ds), training_fingerprint(a), training_fingerprint(b)}) == 3
    assert training_fingerprint(ds, None) != training_fingerprint(ds, ds)  # the validation split counts too


def test_a_killed_fit_resumes_on_the_same_data_and_refuses_other_data(tiny_model_ref, tmp_path, monkeypatch):
    from transferlab.fit import fit

    train = load_dataset("builtin:digits", "train").stratified_sample(60, seed=0)
    out = tmp_path / "o"
    _killed_fit(monkeypatch, train, tiny_model_ref, out)
    other = load_dataset("builtin:digits", "train").stratified_sample(60, seed=1)
    with pytest.raises(TransferlabError, match="trained on other data"):
        fit(other, tiny_model_ref, "head", out=out, epochs=2, image_size=32)
    relabelled = Dataset(train.name, train.modality, train.items, np.roll(train.labels, 1), train.class_names,
                         train.split, train.meta)
    with pytest.raises(TransferlabError, match="trained on other data"):
        fit(relabelled, tiny_model_ref, "head", out=out, epochs=2, image_size=32)
    with pytest.raises(TransferlabError, match="trained on other data"):
        fit(_with_quality(train, np.ones(60, np.float32)), tiny_model_ref, "head", out=out, epochs=2, image_size=32)
    assert (out / "checkpoints").is_dir()  # refusing leaves the checkpoint as it was
    r = fit(train, tiny_model_ref, "head", out=out, epochs=2, image_size=32)  # the same data: resumed
    assert r.metrics["epochs"] == 2 and (out / "metrics.json").is_file()


def test_a_checkpoint_written_before_the_data_was_recorded_still_resumes(tiny_model_ref, tmp_path, monkeypatch):
    from transferlab.fit import _api, fit

    train = load_dataset("builtin:digits", "train").stratified_sample(60, seed=0)
    out = tmp_path / "o"
    monkeypatch.setattr(_api, "training_fingerprint", lambda *ds: None)  # as the versions before it wrote
    _killed_fit(monkeypatch, train, tiny_model_ref, out)
    monkeypatch.undo()
    r = fit(train, tiny_model_ref, "head", out=out, epochs=2, image_size=32)
    assert r.metrics["epochs"] == 2
