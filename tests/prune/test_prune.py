"""``transferlab.prune`` on tiny inputs: a target that looks like two of six source classes keeps those two (label
and feature mapping), the feature-mapping counts spread over several classes (the reference script's indexing bug
collapses them onto one), the manifest reads back as a dataset, and bad input is one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from transferlab.data import Dataset, load_dataset
from transferlab.errors import TransferlabError
from transferlab.prune import list_methods, prune

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "yellow": (200, 200, 30),
           "cyan": (30, 200, 200), "white": (220, 220, 220)}


def _images(root, classes, n, seed):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.clip(np.array(COLOURS[c])[None, None, :] + rng.integers(-25, 25, (16, 16, 3)), 0, 255)
            Image.fromarray(a.astype(np.uint8)).save(root / c / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def setting(tmp_path_factory, tiny_timm_weights):
    from transferlab.fit import fit

    d = tmp_path_factory.mktemp("prune")
    source = _images(d / "source", list(COLOURS), 10, 0)
    target = _images(d / "target", ["red", "cyan"], 8, 1)  # looks like two of the source's classes
    fit(load_dataset(str(source)), f"timm:test_efficientnet@{tiny_timm_weights}", "finetune", epochs=4, lr=1e-2,
        image_size=16, batch_size=8, out=d / "surrogate")  # data in memory: no test split, no report to draw
    return source, target, d / "surrogate"


def test_label_and_feature_mapping_keep_the_target_like_classes(setting, tmp_path):
    source, target, surrogate = setting
    assert list_methods() == ["feature_map", "label_map", "random"]
    for method in ("label_map", "feature_map"):
        r = prune(str(source), str(target), str(surrogate), method, keep=2 / 6, out=tmp_path / method)
        assert sorted(r.kept) == ["cyan", "red"], (method, r.scores)
        assert sum(r.scores.values()) == pytest.approx(len(load_dataset(str(target))))  # one count per example
    fm = prune(str(source), str(target), str(surrogate), "feature_map", keep=0.5)
    assert sum(v > 0 for v in fm.scores.values()) >= 2  # the counts spread over classes (no collapse onto one)
    ds = load_dataset(tmp_path / "label_map")  # the manifest is a dataset: the kept classes, renumbered
    assert list(ds.class_names) == ["cyan", "red"] and set(np.unique(ds.labels)) == {0, 1}
    full = load_dataset(str(source))
    assert len(ds) == int(np.isin(np.array(full.class_names)[full.labels], ["red", "cyan"]).sum())
    assert len(load_dataset(tmp_path / "label_map", "test")) > 0
    body = json.loads((tmp_path / "label_map" / "transferlab-dataset.json").read_text())
    assert body["method"] == "label_map" and not body["source"].startswith("/")  # relative to the manifest


def test_random_is_seeded_and_needs_no_surrogate(setting):
    source, target, _ = setting
    a = prune(str(source), str(target), None, "random", keep=0.5, seed=1)
    b = prune(str(source), str(target), None, "random", keep=0.5, seed=1)
    assert a.kept == b.kept and len(a.kept) == 3


def test_bad_input_is_one_clear_error(setting, tiny_model_ref, tmp_path):
    source, target, surrogate = setting
    texts = Dataset("texts", "text", ["a b", "c d"] * 4, np.array([0, 1] * 4), ("x", "y"), split="train")
    with pytest.raises(TransferlabError, match="holds image data and the target texts text"):
        prune(str(source), texts, str(surrogate), "label_map")
    for keep in (0, 1.5):
        with pytest.raises(TransferlabError, match=r"keep must lie in \(0, 1\]"):
            prune(str(source), str(target), str(surrogate), "label_map", keep=keep)
    with pytest.raises(TransferlabError, match="has no head for source's classes"):
        prune(str(source), str(target), tiny_model_ref, "label_map")
    other = tmp_path / "other"
    from transferlab.fit import fit

    fit(load_dataset(str(target)), tiny_model_ref, "linear_probe", image_size=16, out=other)
    with pytest.raises(TransferlabError, match="surrogate .* predicts other classes than source"):
        prune(str(source), str(target), str(other), "label_map")
    with pytest.raises(TransferlabError, match="needs a surrogate"):
        prune(str(source), str(target), None, "feature_map")
    with pytest.raises(TransferlabError, match="unknown pruning method 'gradnorm'; known: feature_map, label_map"):
        prune(str(source), str(target), str(surrogate), "gradnorm")


def test_prune_cli(setting, tmp_path, capsys):
    from transferlab.cli import main

    source, target, surrogate = setting
    assert main(["prune", "--list"]) == 0 and "label_map" in capsys.readouterr().out
    assert main(["prune", str(source), "--target", str(target), "--surrogate", str(surrogate), "--keep", "0.34",
                 "--out", str(tmp_path / "p")]) == 0
    assert "kept 2 of 6 classes" in capsys.readouterr().out
    assert main(["prune", str(source), "--target", str(target), "--surrogate", str(surrogate), "--out",
                 str(tmp_path / "p")]) == 2
    assert "already holds a pruned source" in capsys.readouterr().err


def test_prune_writes_a_report_with_the_manifest(setting, tmp_path, monkeypatch, capsys):
    """report.html beside the manifest: what was pruned (classes and training examples, before and after), every
    class's score and whether it was kept, and where accuracy before and after is measured (prune trains nothing);
    written together with the manifest or not at all."""
    import re

    from transferlab.cli import main

    source, target, surrogate = setting
    out = tmp_path / "p"
    r = prune(str(source), str(target), str(surrogate), "label_map", keep=2 / 6, out=out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["report.html",
                                                                                  "transferlab-dataset.json"]
    html = (out / "report.html").read_text()
    assert "<h1>transferlab prune</h1>" in html and "label_map" in html
    cells = re.findall(r"<td class='[^']*'>([^<]*)</td>", html)
    n = len(load_dataset(str(source)))  # the train split: 8 of each class's 10 images
    assert n == 48 and r.info["n_source_examples"] == n and r.info["n_kept_examples"] == 16
    # classes 6 -> 2 (33.3 %), training examples 48 -> 16 (33.3 %)
    assert cells[:8] == ["classes", "6", "2", "33.3 %", "training examples", "48", "16", "33.3 %"]
    for c in COLOURS:  # every class, its training examples, kept or pruned
        i = cells.index(c)
        assert cells[i + 2] == "8" and cells[i + 3] == ("kept" if c in ("red", "cyan") else "pruned")
    assert "it trains nothing, so it measures no accuracy before or after pruning" in html
    assert "transferlab bench prune" in html
    # --overwrite replaces a folder holding a report (transferlab's own); the CLI says where the report is
    assert main(["prune", str(source), "--target", str(target), "--surrogate", str(surrogate), "--keep", "0.5",
                 "--out", str(out), "--overwrite"]) == 0
    assert f"report: {(out / 'report.html').resolve()}" in capsys.readouterr().out.replace("\n", "")
    assert "kept 3 of 6" in (out / "report.html").read_text()

    def broken(result):
        raise RuntimeError("report failed")

    monkeypatch.setattr("transferlab.report.prune_report_html", broken)
    with pytest.raises(RuntimeError, match="report failed"):
        prune(str(source), str(target), str(surrogate), "label_map", keep=2 / 6, out=tmp_path / "q")
    assert not (tmp_path / "q").exists()  # no manifest without its report
