"""Run controls users of the anchors look for (issue 29): --log-dir (CSV and TensorBoard event files),
--num-workers, --augment none|light|default."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from transferlab._runtime import controls, run_controls
from transferlab.cli import main
from transferlab.errors import TransferlabError


def test_log_dir_writes_a_csv_row_per_epoch_and_tensorboard_events(tiny_model_ref, tmp_path):
    logs = tmp_path / "logs"
    assert main(["fit", "builtin:digits", "-m", tiny_model_ref, "--method", "head", "--epochs", "2", "--limit", "60",
                 "--image-size", "32", "--log-dir", str(logs), "--out", str(tmp_path / "o"), "-q"]) == 0
    rows = list(csv.DictReader((logs / "train_log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"train_loss", "val_accuracy", "lr"} <= set(rows[0])
    events = list(logs.glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logs))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]
    assert acc.Scalars("train_loss")[0].value == pytest.approx(float(rows[0]["train_loss"]), rel=1e-6)


def test_augment_levels():
    from transferlab.data import load_dataset
    from transferlab.models import ImageTensors

    ds = load_dataset("builtin:digits", "train").stratified_sample(20, seed=0)
    plain = ImageTensors(ds, 32, (0.5,) * 3, (0.5,) * 3)[0][0]
    with run_controls(augment="none"):
        none = ImageTensors(ds, 32, (0.5,) * 3, (0.5,) * 3, augment=True)
        assert all(np.array_equal(none[0][0], plain) for _ in range(5))  # no randomness at all
    with run_controls(augment="light"):
        light = ImageTensors(ds, 32, (0.5,) * 3, (0.5,) * 3, augment=True)
        seen = [light[0][0] for _ in range(20)]
        flipped = plain.flip(-1)
        assert all(np.array_equal(x, plain) or np.array_equal(x, flipped) for x in seen)  # flips only, no crops
    full = ImageTensors(ds, 32, (0.5,) * 3, (0.5,) * 3, augment=True)  # the default: crops too
    assert not all(np.array_equal(full[0][0], plain) or np.array_equal(full[0][0], plain.flip(-1))
                   for _ in range(20))
    with pytest.raises(TransferlabError, match="unknown augmentation 'heavy'"):
        with run_controls(augment="heavy"):
            pass


def test_num_workers_reaches_the_loop(monkeypatch):
    import torch

    from transferlab.train import Supervised, TrainConfig, _loop, train

    seen = []
    real = _loop._Loop.__init__

    def spy(self, cfg, *a, **k):
        seen.append(cfg.num_workers)
        real(self, cfg, *a, **k)

    monkeypatch.setattr(_loop._Loop, "__init__", spy)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    with run_controls(num_workers=2):
        assert controls()["num_workers"] == 2
        train(torch.nn.Linear(4, 2), Supervised(), data, TrainConfig(epochs=1, batch_size=8))
    train(torch.nn.Linear(4, 2), Supervised(), data, TrainConfig(epochs=1, batch_size=8))
    assert seen == [2, 0]
