"""The objective API of the one loop: paired streams, dict batches with indices, label-free selection, hooks and
context, the objective in the checkpoint fingerprint."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import make_blobs

from transferlab.errors import TransferlabError
from transferlab.train import Objective, Supervised, TrainConfig, train


def _data(n=30, seed=0):
    x, y = make_blobs(n, 3, 6, sep=2.0, seed=seed)
    return torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


class Recorder(Objective):
    """Supervised on the source stream; records what the loop hands it."""

    select = ("train_loss", False)  # label-free selection: no validation data at all

    def __init__(self):
        self.seen, self.progress, self.after, self.ends = [], [], 0, []

    def step(self, batch, modules, ctx):
        self.seen.append((ctx.epoch, batch["source"]["index"].tolist(), batch["target"]["index"].tolist()))
        self.progress.append(ctx.progress)
        logits = modules["model"](batch["source"]["x"])
        return torch.nn.functional.cross_entropy(logits, batch["source"]["y"]), {}

    def after_step(self, modules, ctx):
        self.after += 1

    def end_epoch(self, modules, ctx, row):
        self.ends.append(row["epoch"])


def test_paired_streams_epoch_by_the_first_stream_the_second_cycled_reproducibly():
    source, target = _data(30), _data(4, seed=1)  # 90 and 12 examples
    runs = []
    for _ in range(2):
        obj = Recorder()
        r = train({"model": _net()}, obj, {"source": source, "target": target}, TrainConfig(epochs=2, batch_size=20))
        runs.append(obj)
    a = runs[0]
    assert len(a.seen) == 2 * 5  # ceil(90 / 20) steps per epoch, from the first stream
    for epoch in (0, 1):
        src = [i for e, s, _ in a.seen if e == epoch for i in s]
        assert sorted(src) == list(range(90))  # every source example once per epoch
        tgt = [i for e, _, t in a.seen if e == epoch for i in t]
        assert len(tgt) == 5 * 12 and set(tgt) == set(range(12))  # the target cycled (5 batches of 12)
    assert a.seen == runs[1].seen  # reproducible
    assert [s for e, s, _ in a.seen if e == 0] != [s for e, s, _ in a.seen if e == 1]  # reshuffled per epoch
    assert a.after == 10 and a.ends == [1, 2]
    assert a.progress[0] == 0.0 and a.progress == sorted(a.progress) and a.progress[-1] == pytest.approx(0.9)
    assert r.selected_by == "train_loss" and r.best_epoch in (1, 2)
    assert r.best_value == min(h["train_loss"] for h in r.history)


def test_selection_by_a_lower_is_better_value_restores_that_epoch():
    class Worse(Supervised):
        select = ("val_loss", False)

    net = _net()
    r = train({"model": net}, Worse(), _data(), TrainConfig(epochs=6, lr=5e-2, batch_size=16), val_data=_data(10, 5))
    best = min(range(6), key=lambda i: r.history[i]["val_loss"])
    assert r.best_epoch == best + 1 and r.best_value == r.history[best]["val_loss"]


def test_modules_without_trainable_parameters_stay_in_eval_mode():
    seen = []
    frozen = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Dropout(0.5))
    frozen.register_forward_pre_hook(lambda m, i: seen.append(m.training))

    class Through(Supervised):
        def step(self, batch, modules, ctx):
            return super().step({**batch, "x": modules["frozen"](batch["x"])}, modules, ctx)

    obj = Through(params=list(_net().parameters()))
    net = _net()
    obj.params = list(net.parameters())
    train({"model": net, "frozen": frozen}, obj, _data(), TrainConfig(epochs=1))
    assert seen and not any(seen)


def test_resume_under_another_objective_option_is_refused(tmp_path):
    train({"model": _net()}, Supervised(label_smoothing=0.0), _data(), TrainConfig(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(TransferlabError, match=r"objective\.label_smoothing: 0\.0 -> 0\.1"):
        train({"model": _net()}, Supervised(label_smoothing=0.1), _data(), TrainConfig(epochs=1),
              checkpoint_dir=tmp_path)


def test_a_single_module_and_tuple_examples_are_accepted():
    net = _net()
    r = train(net, Supervised(), _data(), TrainConfig(epochs=1))
    assert r.epochs_run == 1 and "train_accuracy" in r.history[0]


def test_epoch_scores_join_the_row_before_selection():
    """A set-level score (computed once per epoch over a whole set, as a label-free selector needs) can pick the
    epoch: here a score that peaks at epoch 2 selects epoch 2 and its weights are restored."""
    import torch

    from transferlab.train import Supervised, TrainConfig, train

    class Scored(Supervised):
        select = ("peak", True)

        def __init__(self):
            super().__init__()
            self.calls, self.snapshots = 0, []

        def epoch_scores(self, modules, device):
            self.calls += 1
            self.snapshots.append(modules["model"].weight.detach().clone())
            return {"peak": -abs(self.calls - 2.0)}

    torch.manual_seed(0)
    x = torch.randn(40, 4)
    y = (x[:, 0] > 0).long()
    net = torch.nn.Linear(4, 2)
    obj = Scored()
    r = train(net, obj, list(zip(x, y, strict=True)), TrainConfig(epochs=4, batch_size=8, lr=0.1))
    assert [row["peak"] for row in r.history] == [-1.0, 0.0, -1.0, -2.0]
    assert r.best_epoch == 2 and r.selected_by == "peak"
    assert torch.equal(net.weight, obj.snapshots[1])
