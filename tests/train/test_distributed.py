"""One training run on several processes (gloo on the CPU), with real processes: the same weights as one process on
the same global batch, exact resume of a killed 2-process run, a 2-process checkpoint resumed by one process,
rank 0 alone writing the output; precision bf16 on the CPU, fp16 refused."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from transferlab.errors import TransferlabError
from transferlab.train import Supervised, TrainConfig, train
from transferlab.train._data import ShardedBatches
from transferlab.train._distributed import spawn, split

# 22 examples in global batches of 7: 7, 7, 7, 1 -> shares 4/3 (odd: the losses are weighted) and, in the last
# batch, 1/0 (rank 1 steps on a stand-in example, weighted 0)
N, BATCH, EPOCHS = 22, 7, 2
# Found here: the 2-process weights differ from one process's by at most 1.8e-5 absolute (the weights moved by up to
# 2.5e-2; the epoch losses agree to 2e-9 relative), the same after 4 or 12 steps: the gradients differ only by the
# order of float32 sums, and AdamW's first step, lr * g / (|g| + eps), turns that into ~1e-3 of lr for the elements
# whose gradient is near eps. Asserted with margin.
ATOL = 5e-5


class _Killed(Supervised):
    """Supervised; the process of rank ``rank`` dies (os._exit) at batch ``batch`` of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int, batch: int, rank: int) -> None:
        super().__init__(freeze_norm_stats=True)
        self.at = (epoch, batch)
        self.rank = rank

    def step(self, batch, modules, ctx):
        if (ctx.epoch, ctx.batch) == self.at and int(os.environ.get("RANK", "0")) == self.rank:
            os._exit(3)
        return super().step(batch, modules, ctx)

    def identity(self):  # the same run as an uninterrupted one: its checkpoints resume there
        return Supervised(freeze_norm_stats=True).identity()


def _run(weights: str, ckdir: str | None = None, kill: tuple[int, int, int] | None = None,
         epochs: int = EPOCHS) -> dict:
    """Train timm's test_efficientnet (its batch norms frozen: their statistics would depend on the share of each
    process) on fixed random images; the trained weights, the history and where it resumed."""
    import timm
    from safetensors.torch import load_file

    torch.manual_seed(0)
    net = timm.create_model("test_efficientnet", pretrained=False)
    net.load_state_dict(load_file(weights))
    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.randn(N, 3, 32, 32, generator=g), torch.randint(0, 3, (N,), generator=g))
    objective = _Killed(*kill) if kill else Supervised(freeze_norm_stats=True)
    cfg = TrainConfig(epochs=epochs, lr=1e-2, batch_size=BATCH, warmup=0.0)
    r = train({"model": net}, objective, data, cfg, checkpoint_dir=ckdir, device="cpu")
    return {"state": {k: v.clone() for k, v in net.state_dict().items()}, "history": r.history,
            "resumed_from": r.resumed_from_epoch}


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def runs(tiny_timm_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One process; two processes; two processes killed in epoch 2 then resumed; its checkpoint resumed by one."""
    w = str(tiny_timm_weights)
    tmp = tmp_path_factory.mktemp("ddp")
    from safetensors.torch import load_file

    with pytest.raises((TransferlabError, RuntimeError)):
        spawn(_run, 2, (w, str(tmp / "ck"), (1, 2, 1)))  # rank 1 dies at batch 2 of epoch 2
    shutil.copytree(tmp / "ck", tmp / "ck1")
    out = {"start": load_file(w), "one": _run(w), "one_from_two": _run(w, str(tmp / "ck1"))}
    out["resumed"], out["two"] = spawn(_resumed_and_uninterrupted, 2, (w, str(tmp / "ck")))
    return out


def _resumed_and_uninterrupted(weights: str, ckdir: str) -> tuple[dict, dict]:
    """The killed run resumed, then an uninterrupted one, in the same two processes (one start-up less)."""
    return _run(weights, ckdir), _run(weights)


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_same_global_batch(runs):
    one, two = runs["one"], runs["two"]
    assert _max_diff(one["state"], two["state"]) < ATOL
    assert _max_diff(one["state"], runs["start"]) > 1e-3  # while training moved the weights
    # the logged epoch means are over all 22 examples, as in one process
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_accuracy"] == b["train_accuracy"]


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_same_weights(runs):
    resumed, two = runs["resumed"], runs["two"]
    assert resumed["resumed_from"] == 1
    assert all(torch.equal(resumed["state"][k], two["state"][k]) for k in two["state"])
    assert resumed["history"] == two["history"]


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_on_one_process(runs):
    r = runs["one_from_two"]
    assert r["resumed_from"] == 1
    assert _max_diff(r["state"], runs["one"]["state"]) < ATOL


def test_shards_are_disjoint_slices_of_the_same_batches():
    batches = [list(range(0, 7)), list(range(7, 14)), [14]]
    parts = [list(ShardedBatches(batches, r, 3)) for r in range(3)]
    assert [p[0] for p in parts] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [p[2] for p in parts] == [[14], [14], [14]]  # ranks 1 and 2 stand in with the first example
    sizes = [list(ShardedBatches(batches, r, 3).sizes) for r in range(3)]
    assert sizes == [[], [], []]  # filled as batches are handed out
    s = ShardedBatches(batches, 2, 3)
    list(s)
    assert list(s.sizes) == [(2, 7), (2, 7), (0, 1)]
    assert [split(10, r, 4) for r in range(4)] == [(0, 3), (3, 6), (6, 8), (8, 10)]


def _blobs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return torch.utils.data.TensorDataset(x, y)


def test_bf16_trains_on_the_cpu_and_fp16_is_refused():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    before = [p.detach().clone() for p in net.parameters()]
    r = train({"model": net}, Supervised(), _blobs(), TrainConfig(epochs=3, lr=1e-2, batch_size=16, precision="bf16"),
              device="cpu")
    losses = [h["train_loss"] for h in r.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast: the weights stay float32
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    with pytest.raises(TransferlabError, match="fp16 trains on CUDA GPUs only"):
        train({"model": net}, Supervised(), _blobs(), TrainConfig(epochs=1, precision="fp16"), device="cpu")


@pytest.mark.slow
def test_fit_on_two_processes_writes_one_complete_output_from_rank_0(tiny_model_ref, tmp_path):
    import json

    from transferlab.data import load_dataset
    from transferlab.fit import fit
    from transferlab.models import load

    tr = load_dataset("builtin:digits").stratified_sample(60)
    te = load_dataset("builtin:digits", "test").stratified_sample(30)
    out = tmp_path / "fit"
    r = fit(tr, tiny_model_ref, "head", test=te, out=out, epochs=2, image_size=32, batch_size=8, devices=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]  # no scratch or half-written sibling
    assert sorted(p.name for p in out.iterdir()) == [
        ".transferlab-output.json", "config.json", "metrics.json", "model.safetensors", "report.html",
        "transferlab.json"]  # the checkpoints removed once the model is written
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"] == r.metrics["history"] and len(metrics["history"]) == 2
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load(out)(x), r.model.eval()(x))  # rank 0's model came back to this process


def _refuse_on_rank_0() -> None:
    from transferlab.train._distributed import barrier, world

    if world().main:
        raise TransferlabError("rank 0 refuses")
    barrier()  # waits for rank 0, which never comes: stopped by spawn


def test_an_error_in_one_process_stops_the_others_and_is_raised_here():
    with pytest.raises(TransferlabError, match="rank 0 refuses"):
        spawn(_refuse_on_rank_0, 2)
