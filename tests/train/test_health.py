"""Reports that stay silent when a run is plainly broken (issue 29): a fit at chance, a class never predicted,
validation accuracy falling every epoch — each a warning (terminal, metrics.json, report)."""

from __future__ import annotations

import numpy as np

from transferlab.train import chance_level, health_warnings

NAMES = ["a", "b", "c", "d"]


def test_a_healthy_run_has_no_warning():
    y = np.repeat(np.arange(4), 10)
    pred = y.copy()
    pred[:3] = 1
    hist = [{"val_accuracy": v} for v in (0.5, 0.7, 0.65, 0.8)]
    assert health_warnings(y_true=y, y_pred=pred, class_names=NAMES, history=hist) == []


def test_at_chance_is_said_with_the_chance_level():
    y = np.repeat(np.arange(4), 10)
    rng = np.random.default_rng(0)
    pred = rng.permutation(y)  # every class predicted, accuracy ~ 1/4
    w = health_warnings(y_true=y, y_pred=pred, class_names=NAMES)
    assert any("is not above chance (0.250 for 4 classes on 40 test examples)" in x for x in w)
    better = y.copy()
    better[:12] = (better[:12] + 1) % 4  # 0.70: clearly above chance on 40 examples
    assert not any("chance" in x for x in health_warnings(y_true=y, y_pred=better, class_names=NAMES))
    skewed = np.array([0] * 30 + [1] * 10)  # the majority class's share is the chance level
    assert chance_level(skewed, 2) == 0.75


def test_a_class_never_predicted_and_one_class_for_everything():
    y = np.repeat(np.arange(4), 10)
    pred = np.where(y == 3, 2, y)
    assert any("never predicts 'd'" in x for x in health_warnings(y_true=y, y_pred=pred, class_names=NAMES))
    one = health_warnings(y_true=y, y_pred=np.zeros_like(y), class_names=NAMES)
    assert any("predicts one class ('a') for every one of the 40" in x for x in one)


def test_validation_accuracy_falling_every_epoch():
    falling = [{"val_accuracy": v} for v in (0.6, 0.5, 0.3)]
    assert any("fell every epoch (0.600 -> 0.300)" in x for x in health_warnings(history=falling))
    assert health_warnings(history=falling[:2]) == []  # two epochs say nothing yet


def test_an_earlier_epoch_kept_on_a_tiny_validation_split_is_said():
    hist = [{"val_accuracy": v} for v in (0.40, 0.70, 0.65, 0.60)]
    w = health_warnings(history=hist, n_val=20, kept_epoch=2)
    # 20 examples at 0.70: sd sqrt(0.7 * 0.3 / 20) = 10.2 points
    assert len(w) == 1 and w[0].startswith("epoch 2 of 4 was kept on a validation split of 20 examples")
    assert "±10 points" in w[0] and "--val-fraction 0" in w[0]
    assert health_warnings(history=hist, n_val=200, kept_epoch=2) == []  # a split that measures
    assert health_warnings(history=hist, n_val=20, kept_epoch=4) == []  # the last epoch kept: nothing chosen
    assert health_warnings(history=hist, n_val=20) == []  # nothing selected


def test_the_cli_takes_val_fraction_zero(tiny_model_ref, tmp_path):
    import json

    from tests.conftest import write_image_folder

    from transferlab.cli import main
    from transferlab.data import load_dataset

    data = write_image_folder(tmp_path / "imgs", n_per_class=4)
    assert main(["fit", str(data), "--model", tiny_model_ref, "--method", "head", "--epochs", "1", "--image-size",
                 "16", "--val-fraction", "0", "--out", str(tmp_path / "o"), "-q"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["n_val"] == 0 and m["n_train"] == len(load_dataset(str(data), "train"))  # every training image
