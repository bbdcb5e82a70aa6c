"""``distill`` and ``transferlab distill`` on tiny models: every method trains on the one loop, teachers see their
own inputs of the same view, the output is an ordinary model directory with the transfer evidence, and bad input is
one clear error before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.distill._data import colours

from transferlab.distill import distill, list_methods
from transferlab.errors import TransferlabError

KW = dict(epochs=2, image_size=16, batch_size=8)


@pytest.fixture
def student_ref(tiny_timm_weights):
    return f"timm:test_efficientnet@{tiny_timm_weights}"


def test_registry():
    assert list_methods() == ["dist", "dkd", "feature", "kd", "kl_dp", "multi_avg", "multi_weighted"]


def test_views_share_one_crop_at_each_networks_size(colour_data):
    from transferlab.distill._inputs import Views
    from transferlab.models import ImageTensors

    train, _ = colour_data
    feeds = [("image", 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ("image", 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    plain = Views([(train, True)], feeds)
    ref = ImageTensors(train, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.equal(plain[3]["v1"], ref[3][0]) and int(plain[3]["y"]) == int(train.labels[3])
    torch.manual_seed(0)
    aug = Views([(train, True)], feeds, augment=True)
    gaps = []
    for i in range(6):
        ex = aug[i]
        small = torch.nn.functional.interpolate(ex["v1"][None], size=16, mode="bilinear", antialias=True)[0]
        gaps.append(float((small - ex["x"]).abs().mean()))
    assert max(gaps) < 0.1  # the same crop and flip, at two sizes (resampling differences only)
    other = Views([(train, True)], [feeds[0]], augment=True)
    torch.manual_seed(1)
    assert any(not torch.equal(other[i]["x"], aug[i]["x"]) for i in range(6))  # augmentation does change views


def test_views_resize_as_each_network_was_trained(colour_data):
    """A feed's interpolation (a timm model whose cfg says bicubic) is the one its evaluation inputs use; a feed
    without one (a card written before the field) resizes bilinearly."""
    from transferlab.distill._inputs import Views
    from transferlab.models import ImageTensors

    train, _ = colour_data
    norm = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    views = Views([(train, True)], [("image", 40, *norm, "bicubic"), ("image", 40, *norm)])
    bicubic, bilinear = (ImageTensors(train, 40, *norm, interpolation=k) for k in ("bicubic", "bilinear"))
    assert torch.equal(views[2]["x"], bicubic[2][0]) and torch.equal(views[2]["v1"], bilinear[2][0])
    assert not torch.equal(bicubic[2][0], bilinear[2][0])


def test_kd_end_to_end_writes_a_model_with_its_evidence(colour_data, teacher_dir, student_ref, tmp_path):
    from transferlab.models import ImageTensors, load, read_card

    train, test = colour_data
    r = distill(train, [teacher_dir], student_ref, "kd", test=test, out=tmp_path / "s", **KW)
    m = r.metrics
    assert m["teacher_test_accuracy"] == [1.0]  # the fixture's teacher learned the colours
    y = test.labels
    assert 0 <= m["knowledge_gain"] <= 1 and 0 <= m["knowledge_loss"] <= 1
    assert m["transfer_delta"] == pytest.approx(m["knowledge_gain"] - m["knowledge_loss"])
    assert m["complementary_knowledge"][0] == pytest.approx(1 - m["start_test_accuracy"])  # a perfect teacher
    assert m["student_params"] > 0 and m["teacher_ms_per_image"][0] > 0 and m["speedup"][0] > 0
    # a fresh head starts at chance: the transfer delta counts all the training taught, and the metrics say so
    # (issue 29: "transfer delta +49.3 points" measured from a random head, silently)
    fresh = [w for w in m["warnings"] if "fresh head at chance" in w]
    assert (m["start_test_accuracy"] <= 1 / 3 + 0.02) == bool(fresh)  # 3 balanced classes: chance 1/3
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["warnings"] == m["warnings"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        ".transferlab-output.json", "config.json", "metrics.json", "model.safetensors", "report.html",
        "transferlab.json"]
    card = read_card(tmp_path / "s")
    assert card.method == "distill:kd" and card.image_size == 16 and list(card.class_names) == list(train.class_names)
    net = load(tmp_path / "s")
    data = ImageTensors(test, 16, tuple(card.mean), tuple(card.std))
    x = torch.stack([data[i][0] for i in range(len(test))])
    with torch.no_grad():
        pred = net(x).argmax(1).numpy()
        r.model.eval()
        assert torch.allclose(net(x), r.model(x), atol=1e-5)
    assert float(np.mean(pred == y)) == pytest.approx(m["test_accuracy"])
    saved = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert not saved["teachers"][0].startswith("/") and saved["teachers"][0].endswith("/t")  # relative, not absolute
    assert read_card(tmp_path / "s").teachers == saved["teachers"]
    html = (tmp_path / "s" / "report.html").read_text()
    assert "Transfer delta" in html and "ms per image" in html


def test_a_teacher_with_its_classes_in_another_order_is_reordered(colour_data, teacher_dir, student_ref):
    from transferlab.data import Dataset

    train, test = colour_data
    perm = [2, 0, 1]  # the data's class k is the teacher's class perm[k]
    names = tuple(train.class_names[p] for p in perm)
    inv = np.argsort(perm)

    def relabel(ds):
        return Dataset(ds.name, "image", ds.items, inv[ds.labels], names, split=ds.split)

    r = distill(relabel(train), [teacher_dir], student_ref, "kd", test=relabel(test), **{**KW, "epochs": 1})
    assert r.metrics["teacher_test_accuracy"] == [1.0]  # without the reordering it would be 0


def test_multi_weighted_trusts_the_teacher_that_transfers(colour_data, teacher_dir, student_ref, tmp_path):
    from transferlab.fit import fit

    train, test = colour_data
    scrambled = colours(16, "train", 0)
    scrambled.labels[:] = np.random.default_rng(0).permutation(scrambled.labels)  # a teacher taught noise
    bad = tmp_path / "bad"
    fit(scrambled, student_ref, "finetune", epochs=1, image_size=24, batch_size=8, out=bad)
    r = distill(train, [bad, teacher_dir], student_ref, "multi_weighted", test=test, **{**KW, "epochs": 1})
    w = r.metrics["teacher_weights"]
    assert w[1] > w[0] and sum(w) == pytest.approx(1.0)
    assert set(r.metrics["weight_scores"]["per_metric"]) == {"logme", "leep", "nce", "sfda", "gbc", "knn"}
    avg = distill(train, [bad, teacher_dir], student_ref, "multi_avg", test=test, **{**KW, "epochs": 1})
    assert avg.metrics["teacher_weights"] == [0.5, 0.5]


def test_kl_dp_and_feature_train(colour_data, teacher_dir, student_ref, tmp_path):
    from transferlab.fit import fit

    train, test = colour_data
    from transferlab.models import evaluate, read_card

    fitted = tmp_path / "student"
    fit(train, student_ref, "finetune", epochs=4, lr=3e-3, image_size=16, batch_size=8, out=fitted)
    r = distill(train, [teacher_dir], fitted, "kl_dp", test=test, epochs=1, batch_size=8, out=tmp_path / "kl")
    assert r.metrics["student_started_trained"] and not r.metrics["warnings"]
    assert 0 <= r.history[0]["train_teacher_share"] <= 1
    card = read_card(tmp_path / "kl")  # the fitted student's base, recorded relative to the new directory
    assert card.model == read_card(fitted).model and card.image_size == 16
    assert evaluate(tmp_path / "kl", test)["accuracy"] == pytest.approx(r.metrics["test_accuracy"])
    f = distill(train, [teacher_dir], student_ref, "feature", test=test, **{**KW, "epochs": 1})
    assert np.isfinite(f.history[0]["train_hint"]) and f.history[0]["train_hint"] > 0


def test_unlabelled_examples_are_distilled_without_labels(colour_data, teacher_dir, student_ref, monkeypatch):
    from transferlab.distill import _objective

    train, test = colour_data
    seen = []
    step = _objective.Distillation.step

    def spy(self, batch, modules, ctx):
        seen.append(batch["y"].clone())
        return step(self, batch, modules, ctx)

    monkeypatch.setattr(_objective.Distillation, "step", spy)
    extra = colours(6, "extra", 5)
    r = distill(train, [teacher_dir], student_ref, "kd", unlabelled=extra, test=test, **{**KW, "epochs": 1})
    y = torch.cat(seen)
    assert int((y == -1).sum()) == len(extra) and r.metrics["n_unlabelled"] == len(extra)


def test_bad_input_is_one_clear_error(colour_data, teacher_dir, student_ref, tmp_path, caplog):
    from transferlab.data import Dataset

    train, test = colour_data
    other = colours(8, "train", 0, classes=("red", "green", "violet"))
    with pytest.raises(TransferlabError, match=r"only teacher .* has blue; only colours-train has violet"):
        distill(other, [teacher_dir], student_ref, "kd", **KW)
    with pytest.raises(TransferlabError, match="no teacher"):
        distill(train, [], student_ref, "kd", **KW)
    with pytest.raises(TransferlabError, match="is also a teacher"):
        distill(train, [teacher_dir], str(teacher_dir), "kd", **KW)
    with pytest.raises(TransferlabError, match="temperature must be a finite number > 0"):
        distill(train, [teacher_dir], student_ref, "kd", temperature=0, **KW)
    with pytest.raises(TransferlabError, match=r"kd_weight must lie in \[0, 1\]"):
        distill(train, [teacher_dir], student_ref, "kd", kd_weight=1.5, **KW)
    with pytest.raises(TransferlabError, match="kd distils one teacher"):
        distill(train, [teacher_dir, teacher_dir], student_ref, "kd", **KW)
    with pytest.raises(TransferlabError, match="unknown distillation method 'dark'; known: dist, dkd, feature, kd"):
        distill(train, [teacher_dir], student_ref, "dark", **KW)
    texts = Dataset("texts", "text", ["a b"] * 6, np.zeros(6, dtype=int), ("x",), split="train")
    with pytest.raises(TransferlabError, match="unlabelled data texts holds text data"):
        distill(train, [teacher_dir], student_ref, "kd", unlabelled=texts, **KW)
    with pytest.raises(TransferlabError, match="has no head for colours-train's classes"):
        distill(train, [student_ref], "builtin:small_resnet_shapes", "kd", **KW)
    with caplog.at_level("WARNING"):
        r = distill(train, [teacher_dir], student_ref, "kl_dp", test=test, **{**KW, "epochs": 1})
    assert "degenerates to copying the teachers" in r.metrics["warnings"][0] and "degenerates" in caplog.text
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(TransferlabError, match="never replaced, not even with --overwrite"):
        distill(train, [teacher_dir], student_ref, "kd", out=tmp_path / "x", overwrite=True, **KW)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["notes.txt"]


def test_distill_cli(teacher_dir, student_ref, tmp_path, capsys):
    from PIL import Image

    from transferlab.cli import main

    assert main(["distill", "--list"]) == 0
    assert "kl_dp" in capsys.readouterr().out
    ds = colours(10, "all", 3)
    for i, (arr, y) in enumerate(zip(ds.items, ds.labels, strict=True)):
        (tmp_path / "imgs" / ds.class_names[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(tmp_path / "imgs" / ds.class_names[y] / f"{i:03d}.png")
    args = ["distill", str(tmp_path / "imgs"), "-t", str(teacher_dir), "-s", student_ref, "--epochs", "1",
            "--image-size", "16", "--batch-size", "8", "-q", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "kd: student test accuracy" in out and "teachers 1.0000" in out
    assert (tmp_path / "out" / "transferlab.json").is_file()
    assert main(args) == 2 and "already holds this distillation" in capsys.readouterr().err
    assert main(["distill", str(tmp_path / "imgs"), "-s", student_ref, "-q"]) == 2
    assert "no teacher" in capsys.readouterr().err
    # --zscore reaches the method as its option: feature has none, refused before any work
    assert main([*args[:-1], str(tmp_path / "z"), "--method", "feature", "--zscore"]) == 2
    assert "feature: no option 'zscore'" in capsys.readouterr().err and not (tmp_path / "z").exists()


def test_text_teacher_into_a_peft_student_with_unlabelled_texts(tiny_text_ref, tmp_path):
    from tests.conftest import make_text_dataset

    from transferlab.fit import fit
    from transferlab.models import evaluate, load

    train, test = make_text_dataset(8), make_text_dataset(4, "test", seed=1)
    fit(train, tiny_text_ref, "finetune", epochs=1, batch_size=8, out=tmp_path / "t")
    fit(train, tiny_text_ref, "lora", epochs=1, batch_size=8, out=tmp_path / "s")  # a peft adapter
    extra = make_text_dataset(3, "extra", seed=2)  # other lengths than train: one padding for both
    r = distill(train, [tmp_path / "t"], tmp_path / "s", "kd", unlabelled=extra, test=test, epochs=1, batch_size=8,
                out=tmp_path / "d")
    assert r.metrics["n_unlabelled"] == len(extra)
    net = load(tmp_path / "d")
    assert net.transferlab_tokenizer is not None
    assert evaluate(tmp_path / "d", test)["accuracy"] == pytest.approx(r.metrics["test_accuracy"])


def test_killed_distillation_resumes_to_the_same_student(colour_data, teacher_dir, student_ref, tmp_path,
                                                         monkeypatch):
    from transferlab.distill._objective import Distillation
    from transferlab.models import load

    train, test = colour_data
    kw = dict(test=test, **KW)
    ref = distill(train, [teacher_dir], student_ref, "kd", out=tmp_path / "ref", **kw)
    step, calls = Distillation.step, {"n": 0}

    def killing_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 7:  # in epoch 2 (43 training examples, batches of 8: 6 per epoch)
            raise KeyboardInterrupt
        return step(self, *a, **k)

    monkeypatch.setattr(Distillation, "step", killing_step)
    with pytest.raises(KeyboardInterrupt):
        distill(train, [teacher_dir], student_ref, "kd", out=tmp_path / "run", **kw)
    monkeypatch.setattr(Distillation, "step", step)
    assert (tmp_path / "run" / "checkpoints").is_dir()
    r = distill(train, [teacher_dir], student_ref, "kd", out=tmp_path / "run", **kw)
    assert r.metrics["resumed_from_epoch"] == 1 and r.history == ref.history
    for (k, a), b in zip(load(tmp_path / "ref").state_dict().items(), load(tmp_path / "run").state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k


def test_a_fitted_student_is_fed_as_its_card_says(colour_data, teacher_dir):
    """A fitted student's inputs resize as its card records (the tiny model's timm cfg says bicubic): the member's
    resize is read from its feed, one place, not kept beside it."""
    from transferlab.distill._members import load_student
    from transferlab.models import read_card

    train, _ = colour_data
    student = load_student(teacher_dir, train, None, False)
    assert read_card(teacher_dir).interpolation == "bicubic"
    assert student.feed[4] == student.inputs(train).interpolation == "bicubic"
