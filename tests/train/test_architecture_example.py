"""The knowledge-distillation objective of docs/architecture.md, run exactly as written: teacher frozen (eval mode,
unchanged), student trained, killed mid-run and resumed with two modules to identical weights."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from tests.conftest import make_blobs

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _example() -> str:
    m = re.search(r"<!-- example: kd -->\s*```python\n(.*?)```\s*<!-- /example -->", DOC.read_text(), re.S)
    assert m, "the KD example is missing from docs/architecture.md"
    return m.group(1)


def _data(n, seed):
    x, y = make_blobs(n, 3, 6, sep=2.0, seed=seed)
    return torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def _net(seed, hidden):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(hidden, 3))


def _run(checkpoints, kill_at=None):
    student, teacher = _net(1, 8), _net(2, 32)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen_modes = []
    teacher.register_forward_pre_hook(lambda m, i: seen_modes.append(m.training))
    calls = {"n": 0}

    class Killed(Exception):
        pass

    def kill(m, i):
        if m.training:
            calls["n"] += 1
            if kill_at is not None and calls["n"] == kill_at:
                raise Killed

    student.register_forward_pre_hook(kill)
    scope = {"student": student, "teacher": teacher, "train_data": _data(40, 0), "val_data": _data(10, 0),
             "checkpoints": checkpoints}
    try:
        exec(compile(_example(), str(DOC), "exec"), scope)
    except Killed:
        return None
    return scope["result"], student, teacher, teacher_before, seen_modes


def test_the_documented_kd_objective_trains_the_student_only(tmp_path):
    result, student, teacher, before, modes = _run(tmp_path / "a")
    assert result.epochs_run == 4 and result.best_epoch is not None
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["train_kl"] < result.history[0]["train_kl"]  # the student moves towards the teacher
    assert "val_accuracy" in result.history[0]
    assert modes and not any(modes)  # the frozen teacher ran in eval mode throughout
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"teacher changed: {k}"


def test_killed_and_resumed_with_two_modules_ends_identical(tmp_path):
    ref = _run(tmp_path / "ref")
    batches = int(np.ceil(120 / 32))
    assert _run(tmp_path / "run", kill_at=batches + 2) is None  # killed in epoch 2
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert set(ckpt["modules"]) == {"student", "teacher"} and ckpt["epoch"] == 1
    resumed = _run(tmp_path / "run")
    assert resumed[0].resumed_from_epoch == 1 and resumed[0].epochs_run == 4
    for (k, a), b in zip(ref[1].state_dict().items(), resumed[1].state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert resumed[0].history == ref[0].history
