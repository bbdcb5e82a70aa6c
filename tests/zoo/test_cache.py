"""Feature cache: content addressing, resume after a kill, atomic chunks, clear errors when it cannot be written."""

import errno
import os

import numpy as np
import pytest

from transferlab.data._dataset import Dataset
from transferlab.errors import CacheError
from transferlab.zoo import FeatureCache, extract_features
from transferlab.zoo._backbone import Backbone, Batch


class CountingBackbone(Backbone):
    """Deterministic features; can be told to die after ``fail_after`` batches (a simulated kill)."""

    modality = "any"

    def __init__(self, fail_after=None, version="1"):
        self.ref, self.fail_after, self.version, self.calls = "test:counting", fail_after, version, 0

    def identity(self):
        return {"ref": self.ref, "version": self.version}

    def _batches(self, ds, indices, *, batch_size, image_size):
        for s in range(0, len(indices), batch_size):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.calls += 1
            idx = indices[s:s + batch_size]
            x = np.asarray(ds.items)[idx]
            yield Batch(np.stack([x.sum(1), x.mean(1) * 3], 1).astype(np.float32), None)


@pytest.fixture
def ds():
    x = np.random.default_rng(0).standard_normal((100, 4))
    return Dataset("toy", "array", x, np.arange(100) % 2, ("a", "b"))


def test_second_run_is_a_cache_hit_and_identical(ds, tmp_path):
    cache = FeatureCache(tmp_path)
    a = extract_features(CountingBackbone(), ds, chunk_size=32, batch_size=8, cache=cache)
    b_backbone = CountingBackbone()
    b = extract_features(b_backbone, ds, chunk_size=32, batch_size=8, cache=cache)
    assert not a.cache_hit and b.cache_hit and b_backbone.calls == 0
    np.testing.assert_array_equal(a.features, b.features)


def test_key_changes_with_model_identity_and_dataset_content(ds, tmp_path):
    cache = FeatureCache(tmp_path)
    extract_features(CountingBackbone(), ds, cache=cache)
    other = CountingBackbone(version="2")
    assert not extract_features(other, ds, cache=cache).cache_hit
    edited = Dataset("toy", "array", ds.items + 1e-9, ds.labels, ds.class_names)
    assert not extract_features(CountingBackbone(), edited, cache=cache).cache_hit


def test_killed_run_resumes_at_the_first_missing_chunk(ds, tmp_path):
    cache = FeatureCache(tmp_path)
    reference = extract_features(CountingBackbone(), ds, chunk_size=32, batch_size=8, cache=None)
    with pytest.raises(KeyboardInterrupt):
        extract_features(CountingBackbone(fail_after=9), ds, chunk_size=32, batch_size=8, cache=cache)
    entry_dir = next((tmp_path / "features").glob("*/*"))
    assert sorted(p.name for p in entry_dir.iterdir()) == ["chunk-000000.npz", "chunk-000001.npz"]
    assert not any(p.name.endswith(".tmp") for p in entry_dir.iterdir())
    resumed_backbone = CountingBackbone()
    resumed = extract_features(resumed_backbone, ds, chunk_size=32, batch_size=8, cache=cache)
    assert resumed_backbone.calls == 4 + 1  # only chunks 2 (4 batches of 8) and 3 (4 rows) run again
    np.testing.assert_array_equal(resumed.features, reference.features)
    assert (entry_dir / "done.json").is_file()


def test_a_damaged_chunk_is_recomputed(ds, tmp_path):
    cache = FeatureCache(tmp_path)
    ref = extract_features(CountingBackbone(), ds, chunk_size=50, cache=cache)
    chunk = next((tmp_path / "features").glob("*/*/chunk-000001.npz"))
    chunk.write_bytes(b"not an npz")
    again = extract_features(CountingBackbone(), ds, chunk_size=50, cache=cache)
    assert not again.cache_hit
    np.testing.assert_array_equal(again.features, ref.features)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_unwritable_cache_is_a_clear_error_and_leaves_no_partial_file(ds, tmp_path, monkeypatch, code, words):
    real_replace = os.replace

    def failing_replace(src, dst):
        if "features" in str(dst):
            raise OSError(code, os.strerror(code))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    cache = FeatureCache(tmp_path / "c")
    with pytest.raises(CacheError, match=rf"cannot write the feature cache .*{words}.*--cache-dir"):
        cache.check_writable()
    with pytest.raises(CacheError, match=words):
        extract_features(CountingBackbone(), ds, cache=cache)
    leftovers = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert leftovers == []


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    from transferlab.zoo import default_cache_dir

    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("TRANSFERLAB_CACHE")
    assert "transferlab" in str(default_cache_dir())


def _chunk(tmp_path, i=1):
    return next((tmp_path / "features").glob(f"*/*/chunk-{i:06d}.npz"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_truncated_or_flipped_chunk_is_a_warning_and_a_recompute(ds, tmp_path, caplog, damage):
    """A damaged zip (zipfile.BadZipFile, CRC errors) is a cache miss, never an error that every rerun repeats."""
    cache = FeatureCache(tmp_path)
    ref = extract_features(CountingBackbone(), ds, chunk_size=50, cache=cache)
    p = _chunk(tmp_path)
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        for i in range(200, min(len(data), 400)):  # inside the stored arrays
            data[i] ^= 0xFF
    p.write_bytes(bytes(data))
    again = extract_features(CountingBackbone(), ds, chunk_size=50, cache=cache)
    assert again.meta["chunks_computed"] == 1
    np.testing.assert_array_equal(again.features, ref.features)
    assert "recomputing it" in caplog.text
    assert extract_features(CountingBackbone(), ds, chunk_size=50, cache=cache).cache_hit  # repaired


def test_an_altered_well_formed_chunk_fails_its_checksum(ds, tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    ref = extract_features(CountingBackbone(), ds, chunk_size=50, cache=cache)
    p = _chunk(tmp_path, 0)
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["features"] = arrays["features"] + 1.0  # a valid NPZ with other numbers and the old checksum
    with open(p, "wb") as fh:
        np.savez(fh, **arrays)
    again = extract_features(CountingBackbone(), ds, chunk_size=50, cache=cache)
    assert again.meta["chunks_computed"] == 1 and "does not match its checksum" in caplog.text
    np.testing.assert_array_equal(again.features, ref.features)


def test_altered_cached_scores_are_recomputed(tmp_path, caplog):
    import json

    from transferlab.rank import rank

    r1 = rank("builtin:digits", "builtin:pixels", "logme", limit=60, cache_dir=tmp_path)
    scores = next(tmp_path.rglob("scores.json"))
    data = json.loads(scores.read_text())
    key = next(iter(data["scores"]))
    data["scores"][key] = 123.0  # altered, checksum kept
    scores.write_text(json.dumps(data))
    r2 = rank("builtin:digits", "builtin:pixels", "logme", limit=60, cache_dir=tmp_path)
    assert "do not match their checksum" in caplog.text
    assert r2.models[0].scores["logme"] == pytest.approx(r1.models[0].scores["logme"])


def test_scores_altered_and_rehashed_alone_are_not_used(tmp_path, caplog):
    """A scores.json altered and re-hashed on its own was used (logme 999.0 ranked first, issue 29): the checksum binds
    the scores to the features' chunks, so a digest of the scores alone no longer matches."""
    import hashlib
    import json

    from transferlab.rank import rank

    r1 = rank("builtin:digits", "builtin:pixels", "logme", limit=60, cache_dir=tmp_path)
    scores = next(tmp_path.rglob("scores.json"))
    data = json.loads(scores.read_text())
    key = next(iter(data["scores"]))
    data["scores"][key] = 999.0
    data["sha256"] = hashlib.sha256(json.dumps(data["scores"], sort_keys=True).encode()).hexdigest()  # re-hashed
    scores.write_text(json.dumps(data))
    r2 = rank("builtin:digits", "builtin:pixels", "logme", limit=60, cache_dir=tmp_path)
    assert "do not match their checksum" in caplog.text
    assert r2.models[0].scores["logme"] == pytest.approx(r1.models[0].scores["logme"]) != 999.0
