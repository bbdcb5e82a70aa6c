"""The training loop: learning, schedule, accumulation, early stopping, exact resume after a kill, clear errors."""

import numpy as np
import pytest
import torch
from tests.conftest import make_blobs

from transferlab.errors import TransferlabError
from transferlab.train import Supervised, TrainConfig, train
from transferlab.train._loop import warmup_cosine


def _data(n_per_class=40, n_classes=3, dim=6, seed=0):
    x, y = make_blobs(n_per_class, n_classes, dim, sep=2.0, seed=seed)
    return torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def _model(dim=6, n_classes=3, seed=0, dropout=0.2):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(16, n_classes))


def test_learns_separable_data_and_records_history():
    tr, va = _data(seed=0), _data(20, seed=0)
    m = _model()
    r = train({"model": m}, Supervised(), tr, TrainConfig(epochs=8, lr=1e-2, batch_size=16), val_data=va)
    assert r.epochs_run == 8 and len(r.history) == 8
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.best_val_accuracy > 0.9
    assert not m.training  # left in eval mode


def test_warmup_then_cosine():
    f = warmup_cosine(100, 0.1, 0.0)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert all(f(i) >= f(i + 1) for i in range(10, 100))


def test_gradient_accumulation_matches_a_larger_batch():
    tr = _data()
    a, b = _model(dropout=0.0), _model(dropout=0.0)
    common = dict(epochs=2, lr=5e-3, clip_grad_norm=None, warmup=0.0)
    train({"model": a}, Supervised(), tr, TrainConfig(batch_size=40, grad_accum=1, **common))
    # same examples per optimizer step (40 = 2 x 20), same order: equal mean gradients
    cfg = TrainConfig(batch_size=20, grad_accum=2, **common)
    # shuffles differ by batch size only through batching, not order: the sampler permutation is the same
    train({"model": b}, Supervised(), tr, cfg)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


class Killed(Exception):
    pass


def test_killed_in_epoch_two_resumes_to_identical_weights(tmp_path):
    tr, va = _data(), _data(20, seed=0)
    cfg = TrainConfig(epochs=4, lr=1e-2, batch_size=16, seed=3)
    ref = _model(seed=1)
    train({"model": ref}, Supervised(), tr, cfg, val_data=va, checkpoint_dir=tmp_path / "ref")

    victim = _model(seed=1)
    calls = {"n": 0}
    batches_per_epoch = int(np.ceil(len(tr) / 16))

    def kill(module, inputs):
        calls["n"] += 1
        if calls["n"] == batches_per_epoch + 3:  # mid-epoch 2 (validation uses eval mode and is not counted)
            raise Killed

    h = victim.register_forward_pre_hook(lambda m, i: kill(m, i) if m.training else None)
    with pytest.raises(Killed):
        train({"model": victim}, Supervised(), tr, cfg, val_data=va, checkpoint_dir=tmp_path / "run")
    h.remove()
    fresh = _model(seed=1)  # a new process would rebuild the model from scratch
    r = train({"model": fresh}, Supervised(), tr, cfg, val_data=va, checkpoint_dir=tmp_path / "run")
    assert r.resumed_from_epoch == 1 and r.epochs_run == 4
    for pa, pb in zip(ref.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_resume_with_a_different_config_is_refused(tmp_path):
    tr = _data()
    train({"model": _model()}, Supervised(), tr, TrainConfig(epochs=1, lr=1e-2), checkpoint_dir=tmp_path)
    with pytest.raises(TransferlabError, match=r"different training config \(lr: 0\.01 -> 0\.02\)"):
        train({"model": _model()}, Supervised(), tr, TrainConfig(epochs=1, lr=2e-2), checkpoint_dir=tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "hostile"])
def test_a_damaged_or_hostile_checkpoint_is_one_error_naming_the_file(tmp_path, damage):
    """A truncated or hostile checkpoint.pt gave torch's traceback on resume (issue 29): one line naming the file and
    what to do; a hostile pickle is never run (weights_only)."""
    import os
    import pickle

    tr = _data()
    train({"model": _model()}, Supervised(), tr, TrainConfig(epochs=1, lr=1e-2), checkpoint_dir=tmp_path)
    ck = tmp_path / "checkpoint.pt"
    if damage == "truncated":
        ck.write_bytes(ck.read_bytes()[:200])
    else:
        class Hostile:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))

        ck.write_bytes(pickle.dumps({"modules": Hostile()}))
    with pytest.raises(TransferlabError, match=r"cannot resume from .*checkpoint\.pt: it is damaged or not a "
                                               r"transferlab checkpoint .*remove .* to start the run again"):
        train({"model": _model()}, Supervised(), tr, TrainConfig(epochs=1, lr=1e-2), checkpoint_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_early_stopping_restores_the_best_weights():
    tr = _data(seed=0)
    va = _data(20, seed=99)  # a validation set drawn from other class means: accuracy will not keep improving
    m = _model()
    r = train({"model": m}, Supervised(), tr, TrainConfig(epochs=30, lr=3e-2, patience=2, batch_size=16), val_data=va)
    assert r.stopped_early and r.epochs_run < 30
    assert r.epochs_run - r.best_epoch == 2
    # a run that cannot improve (lr ~ 0): patience 2 ends it after epoch 3; that is an early stop only if more
    # epochs were planned
    flat = [train({"model": _model()}, Supervised(), tr, TrainConfig(epochs=n, lr=1e-12, patience=2, batch_size=16),
                  val_data=va) for n in (3, 5)]
    assert [f.epochs_run for f in flat] == [3, 3] and [f.stopped_early for f in flat] == [False, True]
    from transferlab.train import evaluate

    acc = evaluate(Supervised(), {"model": m}, va, 32)["accuracy"]
    assert acc == pytest.approx(r.best_val_accuracy)


def test_balanced_class_weights_and_validation():
    from transferlab.train._objective import class_weight_vector

    w = class_weight_vector("balanced", np.array([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([4 / 6, 2.0])
    assert Supervised(class_weights="balanced", labels=np.array([0, 0, 0, 1]))._weights.tolist() == \
        pytest.approx([4 / 6, 2.0])
    with pytest.raises(TransferlabError, match="3 entries for 2 classes"):
        class_weight_vector([1.0, 2.0, 3.0], None, 2)
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        TrainConfig(learning_rate=0.1)


def test_divergence_is_a_clear_error():
    tr = _data()
    m = _model()
    with torch.no_grad():
        m[0].weight[0, 0] = float("inf")
    with pytest.raises(TransferlabError, match="training diverged") as err:
        train({"model": m}, Supervised(), tr, TrainConfig(epochs=1, lr=1.0, clip_grad_norm=None))
    assert "precision" not in str(err.value)  # fp32 here: nothing to turn off
    # in mixed precision the message names the flag that turns it off (it said "disable mixed precision", which no
    # flag could: issue 29)
    from transferlab._runtime import runtime

    with runtime(precision="bf16"), pytest.raises(TransferlabError, match=r"lower --lr or train in full precision "
                                                                          r"\(--precision fp32; bf16 mixed"):
        train({"model": m}, Supervised(), tr, TrainConfig(epochs=1, lr=1.0, clip_grad_norm=None))


def test_nothing_to_train():
    m = _model()
    for p in m.parameters():
        p.requires_grad_(False)
    with pytest.raises(TransferlabError, match="nothing to train"):
        train({"model": m}, Supervised(), _data(), TrainConfig(epochs=1))


def test_length_grouped_batches_cover_every_example_once_in_similar_lengths():
    import torch

    from transferlab.train._data import LengthGroupedBatches

    lengths = np.random.default_rng(0).integers(1, 200, 1000)
    make = lambda seed: LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(seed), pool=10)  # noqa: E731
    batches = list(make(1))
    assert len(batches) == len(make(1)) == 125
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == list(make(1)) and batches != list(make(2))  # deterministic per seed, shuffled across seeds
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    shuffled = np.mean([np.ptp(lengths[b]) for b in np.array_split(np.random.default_rng(1).permutation(1000), 125)])
    assert spread < shuffled / 4  # within-batch length spread shrinks: little padding
    plain = list(LengthGroupedBatches(lengths, 8, None, shuffle=False))
    assert sorted(i for b in plain for i in b) == list(range(1000))


def test_lr_scales_give_parameters_their_own_learning_rate():
    """Adam's first step moves each weight by about its lr: a 10x scale moves the head 10x as far."""
    import torch

    from transferlab.train import Supervised, TrainConfig, train

    f, y = make_blobs(20, 3, 4)
    data = torch.utils.data.TensorDataset(torch.tensor(f, dtype=torch.float32), torch.tensor(y))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    head = list(model[2].parameters())
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=60, warmup=0.0, weight_decay=0.0, clip_grad_norm=None)
    train({"model": model}, Supervised(lr_scales={id(p): 10.0 for p in head}), data, cfg)
    steps = [float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before, strict=True)]
    assert steps[0] == pytest.approx(1e-3, rel=0.05) and steps[2] == pytest.approx(1e-2, rel=0.05)
