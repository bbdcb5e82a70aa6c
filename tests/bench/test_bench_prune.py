"""``bench prune`` on tiny colour sets: every row pretrains on the classes it keeps (label_map and its bottom are
complements at keep 0.5; the target-like class is kept), the table compares with the full source of the same seed,
runs are cached, and bad input is one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from transferlab.errors import TransferlabError

COLOURS = {"red": (210, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 210), "yellow": (210, 210, 20),
           "cyan": (20, 200, 200), "white": (230, 230, 230), "pink": (240, 60, 60),
           "orange": (240, 150, 30)}


def _folder(root, classes, n, seed):
    rng = np.random.default_rng(seed)
    for split, k in (("train", n), ("test", 4)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                a = np.clip(np.array(COLOURS[c])[None, None, :] + rng.integers(-20, 20, (12, 12, 3)), 0, 255)
                Image.fromarray(a.astype(np.uint8)).save(root / split / c / f"{i:02d}.png")
    return str(root)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("bp")
    return _folder(d / "source", ["red", "green", "blue", "yellow", "cyan", "white"], 10, 0), \
        _folder(d / "target", ["pink", "orange"], 8, 1)  # two classes: fit refuses a one-class target


def test_bench_prune_rows_table_and_cache(sets, tmp_path, monkeypatch):
    from transferlab.bench import _prune, bench_prune

    source, target = sets
    r = bench_prune(out=tmp_path, source=source, targets=[target], seeds=[0], pretrain_epochs=6, epochs=1)
    rows = {x["row"]: x for x in r.table()}
    assert list(rows) == ["full", "label_map", "feature_map", "random", "bottom"]
    assert rows["full"]["delta_vs_full"] == 0 and len(rows["full"]["classes"]) == 6
    lm, bottom = set(rows["label_map"]["classes"]), set(rows["bottom"]["classes"])
    assert len(lm) == len(bottom) == 3 and not lm & bottom  # the top and the bottom half of one ranking
    assert "red" in lm and "red" in rows["feature_map"]["classes"]  # a pink target maps to red
    assert rows["label_map"]["n_pretrain"] == 30 and rows["full"]["n_pretrain"] == 60
    for x in rows.values():
        run = next(u for u in r.runs if u["row"] == x["row"])
        assert x["accuracy_mean"] == run["test_accuracy"] and run["pretrain_seconds"] > 0
        assert x["speedup_vs_full"] == pytest.approx(rows["full"]["pretrain_seconds"] / run["pretrain_seconds"])
    paths = r.save(tmp_path)
    assert json.loads(paths["json"].read_text())["table"][0]["row"] == "full"
    assert "bottom of label_map" in paths["html"].read_text()
    monkeypatch.setattr("transferlab.fit.fit", lambda *a, **k: pytest.fail("cached runs are not redone"))
    again = bench_prune(out=tmp_path, source=source, targets=[target], seeds=[0], pretrain_epochs=6, epochs=1)
    assert again.runs == r.runs
    assert _prune.ROWS == ("full", "label_map", "feature_map", "random", "bottom")


def test_bench_prune_bad_input(sets, tmp_path):
    from transferlab.bench import bench_prune

    source, target = sets
    with pytest.raises(TransferlabError, match=r"keep must lie in \(0, 1\)"):
        bench_prune(out=tmp_path, source=source, targets=[target], keep=1.0)
    with pytest.raises(TransferlabError, match="shares classes with the source"):
        bench_prune(out=tmp_path, source=source, targets=[source])
    with pytest.raises(TransferlabError, match="text data"):
        bench_prune(out=tmp_path, source=source, targets=["builtin:rotten-tomatoes"])


def test_a_target_made_of_renamed_source_classes_is_refused(sets, tmp_path):
    """bench prune compared class-name strings only (issue 29: --targets builtin:shapes-source was accepted): the
    examples are compared by content."""
    import shutil

    from transferlab.bench import bench_prune

    source, _ = sets
    renamed = tmp_path / "renamed"
    for split in ("train", "test"):
        shutil.copytree(f"{source}/{split}/red", renamed / split / "crimson")
        shutil.copytree(f"{source}/{split}/blue", renamed / split / "navy")
    with pytest.raises(TransferlabError, match=r"holds examples of the source under other names \(crimson = source "
                                               r"red; navy = source blue\)"):
        bench_prune(out=tmp_path / "b", source=source, targets=[str(renamed)], seeds=[0], pretrain_epochs=1, epochs=1)
    assert not (tmp_path / "b").exists()


def test_a_subset_is_chosen_again_for_another_surrogate_or_limit(tmp_path, monkeypatch):
    """The kept classes of a mapping row depend on the surrogate (its architecture, pretraining epochs, sample) and on
    the scoring sample: a subset folder keyed by target, seed, keep and source alone was reused by a bench of another
    --arch, --pretrain-epochs or --limit in the same --out (H8's review, item 1's pattern)."""
    from pathlib import Path

    import transferlab.prune as prune_pkg
    from transferlab.bench._prune import _subset
    from transferlab.data import MANIFEST

    calls = []

    def fake_prune(source, target, surrogate, method, keep, seed, limit, out, overwrite):
        calls.append((str(surrogate), limit))
        Path(out).mkdir(parents=True)
        (Path(out) / MANIFEST).write_text("{}")

    monkeypatch.setattr(prune_pkg, "prune", fake_prune)
    for surrogate, limit in [("pre-a", None), ("pre-a", None), ("pre-b", None), ("pre-a", 40)]:
        _subset(tmp_path, "t", "label_map", 0, tmp_path / surrogate, 0.5, "s", limit)
    assert calls == [(str(tmp_path / "pre-a"), None), (str(tmp_path / "pre-b"), None), (str(tmp_path / "pre-a"), 40)]


def test_a_rows_pretraining_on_another_device_or_precision_has_its_own_folder(sets, tmp_path, monkeypatch):
    """A run's cached record is keyed by the device and precision asked for; the model it pretrains (cached by
    folder) was not: a bench on another device reused the first one's pretraining (H8's review, item 1's pattern).
    The jobs hand the runtime to the pretraining; without one the folders keep their names."""
    import json as js
    from pathlib import Path

    import transferlab.pretrain as pretrain_pkg
    from transferlab.bench import _prune

    made = []

    def fake_pretrain(source, arch, d, **kw):
        made.append(Path(d).name)
        Path(d).mkdir(parents=True)
        (Path(d) / "metrics.json").write_text(js.dumps({"n_train": 1}))

    monkeypatch.setattr(pretrain_pkg, "pretrain", fake_pretrain)
    source, _ = sets
    for runtime in (None, {"device": "cpu"}, {"precision": "bf16"}, None):
        _prune._pretrained(tmp_path, source, "resnet", 0, 1, None, False, runtime)
    assert len(made) == 3 and len(set(made)) == 3  # the last call found the first one's model
    jobs = []
    monkeypatch.setattr(_prune, "run_jobs", lambda js_, **kw: jobs.extend(js_) or [])
    monkeypatch.setattr(_prune, "PruneBenchResult", lambda *a, **k: None)
    _prune.bench_prune(out=tmp_path, source=source, targets=[sets[1]], seeds=[0], device="cpu", precision="bf16")
    assert jobs and all(j.kwargs["runtime"] == {"device": "cpu", "precision": "bf16"} for j in jobs)
