"""``transferlab.pretrain.pretrain`` / ``zoo build --source``: one small architecture pretrained from scratch on any
image source (a pruned one included) into a model directory that ``fit --init`` fine-tunes, ``predict`` reads, and a
killed or repeated run handles; and the built-in ``mixed-source`` the prune bench pretrains on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.pretrain import pretrain

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "yellow": (200, 200, 30)}


def _colours(root, classes, n, seed, split_dirs=True):
    rng = np.random.default_rng(seed)
    for split, k in (("train", n), ("test", 4)) if split_dirs else (("", n),):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                a = np.clip(np.array(COLOURS[c])[None, None, :] + rng.integers(-25, 25, (12, 12, 3)), 0, 255)
                Image.fromarray(a.astype(np.uint8)).save(d / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _colours(tmp_path_factory.mktemp("pre") / "source", list(COLOURS), 12, 0)


def test_pretrained_directory_is_a_model_fit_can_start_from(source, tmp_path):
    from safetensors.torch import load_file

    from transferlab.fit import fit
    from transferlab.models import load, predict

    r = pretrain(str(source), "resnet", tmp_path / "pre", epochs=8)
    assert r.source_accuracy >= 75.0  # four colours: learnt, not chance (25 %)
    card = json.loads((tmp_path / "pre" / "transferlab.json").read_text())
    assert card["method"] == "pretrain" and card["class_names"] == sorted(COLOURS)
    assert card["architecture"]["name"] == "test_resnet" and card["image_size"] == 32
    assert not card["train"]["source"].startswith("/")  # recorded relative to the model folder (issue 29)
    assert (tmp_path / "pre" / card["train"]["source"]).resolve() == source.resolve()
    assert not (tmp_path / "pre" / "checkpoints").exists()  # the resumable checkpoints go with success
    test = load_dataset(str(source), "test")
    pred, _, _ = predict(tmp_path / "pre", test)  # the saved directory predicts as the trained network did
    assert 100.0 * np.mean(pred == test.labels) == pytest.approx(r.source_accuracy)
    # fit --init starts from these weights: a two-class target, the head replaced, the body loaded
    target = _colours(tmp_path / "target", ["red", "blue"], 6, 1)
    f = fit(str(target), "builtin:small_resnet_shapes", "finetune", init=tmp_path / "pre", epochs=1, lr=1e-9,
            out=tmp_path / "fitted")
    w0, w1 = load_file(str(tmp_path / "pre" / "model.safetensors")), load_file(str(tmp_path / "fitted" /
                                                                                    "model.safetensors"))
    body = [k for k in w0 if not k.startswith("fc.")]
    assert body and all(np.allclose(w0[k].numpy(), w1[k].numpy(), atol=1e-5) for k in body if w0[k].is_floating_point()
                        and "running" not in k)
    assert f.metrics["test_accuracy"] is not None and load(tmp_path / "fitted").fc.out_features == 2
    with pytest.raises(TransferlabError, match="already holds this pretraining"):
        pretrain(str(source), "resnet", tmp_path / "pre", epochs=8)


def test_pruned_manifest_is_a_source(source, tmp_path):
    from transferlab.data._manifest import MANIFEST, manifest_dict

    (tmp_path / "half").mkdir()
    (tmp_path / "half" / MANIFEST).write_text(json.dumps(manifest_dict(str(source), ["blue", "red"], tmp_path / "half")))
    r = pretrain(str(tmp_path / "half"), "vit", epochs=1)
    assert r.metrics["num_classes"] == 2 and r.metrics["n_train"] == 24 and r.out is None
    assert r.model.get_classifier().out_features == 2


def test_bad_input(source, tmp_path, capsys):
    from transferlab.cli import main

    with pytest.raises(TransferlabError, match="unknown architecture 'mlp'.*resnet, convnext, vit"):
        pretrain(str(source), "mlp")
    with pytest.raises(TransferlabError, match="epochs"):
        pretrain(str(source), "resnet", epochs=0)
    with pytest.raises(TransferlabError, match="text data"):
        pretrain("builtin:rotten-tomatoes", "resnet")
    assert main(["zoo", "build", "--source", str(source)]) == 2
    assert "--source needs --out" in capsys.readouterr().err
    assert main(["zoo", "build", "--source", str(source), "--out", str(tmp_path / "x"), "--models", "small_vit_shapes"]) == 2
    assert not (tmp_path / "x").exists()


def test_mixed_source_is_a_balanced_29_class_union():
    tr, te = load_dataset("builtin:mixed-source", "train"), load_dataset("builtin:mixed-source", "test")
    assert tr.num_classes == 29 and len(set(tr.class_names)) == 29 and tr.class_names == te.class_names
    assert tr.items.shape[1:] == (28, 28) and tr.items.dtype == np.uint8
    assert tr.class_counts().min() >= 139 and tr.class_counts().max() == 140 and set(te.class_counts()) == {35}
    digits = load_dataset("builtin:digits", "train")
    first = tr.items[tr.labels == tr.class_names.index("digit 3")][0]
    src = digits.items[digits.labels == 3][0]
    assert np.corrcoef(first[::4, ::4].ravel().astype(float),
                       np.asarray(Image.fromarray(src).resize((28, 28), Image.BILINEAR))[::4, ::4].ravel())[0, 1] > 0.99
    assert {"shape circle", "texture dots", "sneaker"} <= set(tr.class_names)
