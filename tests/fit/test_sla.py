"""Self-supervised label augmentation (issue 34 item 3): the aggregation by hand, the rotations of training and of
inference agree, and an SLA fit's test accuracy is the aggregated joint logits' (computed here with numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.data import Dataset
from transferlab.fit._sla import fit_label_augmented, rotated_dataset
from transferlab.models import sla_aggregate as aggregate


def test_aggregate_by_hand():
    # 2 classes x 4 rotations; joint logit index c * 4 + k. One image; rotation k's logits z[k, 0, :].
    z = np.zeros((4, 1, 8))
    z[0, 0] = [1, 9, 9, 9, 2, 9, 9, 9]  # rotation 0 reads (c=0, k=0) = 1 and (c=1, k=0) = 2
    z[1, 0] = [9, 3, 9, 9, 9, 0, 9, 9]  # rotation 1 reads index 1 (c=0) = 3 and index 5 (c=1) = 0
    z[2, 0] = [9, 9, 5, 9, 9, 9, 1, 9]  # rotation 2: indices 2 and 6
    z[3, 0] = [9, 9, 9, -1, 9, 9, 9, 4]  # rotation 3: indices 3 and 7
    # s_0 = (1 + 3 + 5 - 1) / 4 = 2, s_1 = (2 + 0 + 1 + 4) / 4 = 1.75: the 9s (other rotations' slots) never count
    np.testing.assert_allclose(aggregate(z), [[2.0, 1.75]])
    import torch

    torch.testing.assert_close(aggregate(torch.from_numpy(z)), torch.tensor([[2.0, 1.75]], dtype=torch.float64))


def _tiny_images(n_per_class: int = 8, size: int = 12, seed: int = 0) -> Dataset:
    """Two classes: a bright bar at the top (0) or on the left (1): rotations tell the classes' orientations apart."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (2 * n_per_class, size, size), dtype=np.uint8)
    x[:n_per_class, :3, :] = 250
    x[n_per_class:, :, :3] = 250
    return Dataset("bars", "image", x, np.repeat([0, 1], n_per_class), ("top", "left"))


def test_training_rotations_are_the_inference_rotations():
    import torch

    from transferlab.models import ImageTensors

    ds = _tiny_images(3)
    rot = rotated_dataset(ds)
    assert len(rot) == 4 * len(ds) and rot.class_names[:4] == ("top@0", "top@90", "top@180", "top@270")
    np.testing.assert_array_equal(rot.labels, np.concatenate([ds.labels * 4 + k for k in range(4)]))
    plain, turned = ImageTensors(ds, 16, (0.5,) * 3, (0.25,) * 3), ImageTensors(rot, 16, (0.5,) * 3, (0.25,) * 3)
    for k in range(4):
        for i in range(len(ds)):
            # equal up to one grey level (1/255 over std 0.25): resizing then rounding is not exactly rotation-symmetric
            torch.testing.assert_close(turned[k * len(ds) + i][0], torch.rot90(plain[i][0], k, dims=(1, 2)),
                                       atol=1 / 255 / 0.25 + 1e-6, rtol=0)


def test_rotations_keep_each_images_quality_column():
    ds = _tiny_images(2)
    q = np.array([0.1, 0.9, 0.4, 0.6], dtype=np.float32)
    rot = rotated_dataset(Dataset(ds.name, "image", ds.items, ds.labels, ds.class_names, meta={"quality": q}))
    # rotation k of image i sits at k * 4 + i: the same image, the same quality
    np.testing.assert_array_equal(rot.meta["quality"], np.concatenate([q, q, q, q]))


def test_the_validation_split_takes_all_rotations_of_an_image_or_none():
    """Rotations of one training image in validation would score the best epoch on what training saw."""
    from transferlab.data import split_validation, validation_indices

    ds = _tiny_images(10)
    rot = rotated_dataset(ds)
    train, val = split_validation(rot, 0.2, seed=3)
    image = lambda d: {int(np.flatnonzero((ds.items == np.rot90(x, -(y % 4))).all((1, 2)))[0])  # noqa: E731
                       for x, y in zip(d.items, d.labels, strict=True)}
    assert image(train).isdisjoint(image(val)) and len(image(val)) == 4  # 20 % of each class's 10 images
    assert len(val) == 16 and sorted(np.bincount(val.labels // 4)) == [8, 8]
    assert set(val.meta["groups"].tolist()) == image(val)  # a subset keeps each example's group: its image
    plain = validation_indices(rot.labels, 0.2, seed=3)  # without groups: the same image on both sides
    assert set(np.arange(len(rot))[plain[1]] % len(ds)) & set(np.arange(len(rot))[plain[0]] % len(ds))


def test_sla_test_accuracy_is_the_aggregated_joint_prediction(tiny_model_ref):
    import torch

    from transferlab.models import ImageTensors

    train, test = _tiny_images(10), _tiny_images(6, seed=1)
    r = fit_label_augmented(train, tiny_model_ref, "head", test=test, epochs=1, image_size=16, batch_size=16,
                            val_fraction=0)
    m = r.metrics
    assert m["joint_fit"]["n_train"] == 4 * len(train)
    data = ImageTensors(test, 16, tuple(m["joint_fit"]["mean"]), tuple(m["joint_fit"]["std"]),
                        interpolation=m["joint_fit"]["interpolation"])
    x = torch.stack([data[i][0] for i in range(len(test))])
    with torch.no_grad():
        z = np.stack([r.fit.model.eval()(torch.rot90(x, k, dims=(2, 3))).numpy() for k in range(4)])
    s = np.stack([sum(z[k, i, c * 4 + k] for k in range(4)) / 4 for i in range(len(test)) for c in range(2)])
    assert m["test_accuracy"] == pytest.approx(np.mean(s.reshape(-1, 2).argmax(1) == test.labels))
    assert m["joint_identity_accuracy"] == pytest.approx(np.mean(z[0].reshape(-1, 2, 4)[:, :, 0].argmax(1) == test.labels))


def test_single_head_is_distilled(tiny_model_ref):
    train, test = _tiny_images(10), _tiny_images(6, seed=1)
    r = fit_label_augmented(train, tiny_model_ref, "head", test=test, epochs=1, image_size=16, batch_size=16,
                            val_fraction=0, head="single")
    assert r.single is not None and 0.0 <= r.metrics["single_head_accuracy"] <= 1.0
    assert not any(p.requires_grad for p in r.single.net.parameters())


def test_a_saved_sla_fit_reloads_to_the_same_aggregated_predictions(tiny_model_ref, tmp_path):
    from transferlab.models import load, predict

    train, test = _tiny_images(10), _tiny_images(6, seed=1)
    r = fit_label_augmented(train, tiny_model_ref, "head", test=test, epochs=1, image_size=16, batch_size=16,
                            val_fraction=0, out=tmp_path / "sla")
    pred, probs, card = predict(tmp_path / "sla", test)
    assert card["structure"]["kind"] == "sla" and probs.shape == (len(test), 2)
    assert np.mean(pred == test.labels) == pytest.approx(r.metrics["test_accuracy"])
    assert type(load(tmp_path / "sla")).__name__ == "Aggregated"


def test_a_saved_single_head_fit_reloads_and_predicts_with_its_single_head(tiny_model_ref, tmp_path):
    import torch

    from transferlab.models import ImageTensors, load, predict

    train, test = _tiny_images(10), _tiny_images(6, seed=1)
    r = fit_label_augmented(train, tiny_model_ref, "head", test=test, epochs=1, image_size=16, batch_size=16,
                            val_fraction=0, head="single", out=tmp_path / "sd")
    m = r.metrics["joint_fit"]
    x = torch.stack([ImageTensors(test, 16, tuple(m["mean"]), tuple(m["std"]), interpolation=m["interpolation"])[i][0]
                     for i in range(len(test))])  # the tiny timm model's cfg resizes bicubic
    net, w, b = r.fit.model.eval(), r.single.head.weight.detach().cpu(), r.single.head.bias.detach().cpu()
    with torch.no_grad():  # by hand: the single head is a linear layer on the joint network's pre-logits features
        feats = net.forward_head(net.forward_features(x), pre_logits=True)
        want = torch.softmax(feats @ w.T + b, 1).numpy()
        z = torch.stack([net(torch.rot90(x, k, dims=(2, 3))) for k in range(4)])
    agg = torch.softmax(sum(z[k][:, k::4] for k in range(4)) / 4, 1).numpy()
    _, probs, card = predict(tmp_path / "sd", test)
    assert card["structure"]["head"] == "single"
    np.testing.assert_allclose(probs, want, atol=1e-5)
    assert np.abs(want - agg).max() > 1e-3  # the two heads differ: the check above tells them apart
    loaded = load(tmp_path / "sd")
    loaded.head = "aggregate"  # the aggregated prediction stays available
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(loaded(x), 1).numpy(), agg, atol=1e-5)
    with pytest.raises(Exception, match="'aggregate' or 'single'"):
        loaded.head = "joint"
    _, by_name, _ = predict(tmp_path / "sd", test, head="aggregate")  # predict --head aggregate, the same switch
    np.testing.assert_allclose(by_name, agg, atol=1e-5)


def test_the_cli_reports_the_accuracy_of_the_head_the_saved_model_predicts_with(tiny_model_ref, tmp_path, capsys):
    """fit --sla-head single saves a model that predicts with the single head: the line names that head's accuracy
    (metrics.json's single_head_accuracy), the aggregated one beside it."""
    import json

    from transferlab.cli import main

    out = tmp_path / "o"
    assert main(["fit", "builtin:digits", "-m", tiny_model_ref, "--method", "head", "--limit", "40", "--test-limit", "40",
                 "--epochs", "1", "--image-size", "16", "--label-augmentation", "rotation", "--sla-head", "single", "--out", str(out), "-q"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    text = " ".join(capsys.readouterr().out.split())
    assert f"single-head test accuracy {m['single_head_accuracy']:.4f} (aggregated {m['test_accuracy']:.4f})" in text


def test_a_head_refitted_on_the_labels_has_the_single_heads_loss_with_the_labels_as_teacher(monkeypatch):
    """``distil_single_head(net, None, ...)`` (the control of the distillation, benchmarks/bench_sla.py): the teacher
    is the one-hot label, so the loss is KL(one-hot || p) + CE = 2 * CE, computed here with numpy."""
    import timm
    import torch

    import transferlab.train as train_pkg
    from transferlab.fit._sla import distil_single_head

    seen = {}
    monkeypatch.setattr(train_pkg, "train", lambda modules, objective, data, cfg: seen.update(obj=objective, cfg=cfg))
    net = timm.create_model("test_efficientnet", pretrained=False, num_classes=2).eval()
    ds = _tiny_images(3)
    head = distil_single_head(net, None, ds, {"image_size": 16, "mean": (0.5,) * 3, "std": (0.5,) * 3},
                              batch_size=4, seed=0, epochs=3, lr=0.05)
    assert (seen["cfg"].epochs, seen["cfg"].lr) == (3, 0.05) and head.head.out_features == 2
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5], [0.0, 3.0]])
    idx = torch.tensor([0, 4, 1])  # labels 0, 1, 0
    z = logits.numpy().astype(np.float64)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected = 2 * -np.mean(logp[[0, 1, 2], [0, 1, 0]])
    assert float(seen["obj"].loss(logits, idx)) == pytest.approx(expected, rel=1e-5)
