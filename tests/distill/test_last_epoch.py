"""The last epoch's test accuracy beside the selected epoch's (issue 33 item 4; mdistiller#7, #42): measured with the
weights the last epoch left (which the objective keeps), and the selected weights put back after."""

from __future__ import annotations

import numpy as np
import torch

from transferlab.distill._api import _test_evidence
from transferlab.distill._objective import Distillation

X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.5], [0.2, 1.0]], dtype=np.float32)
Y = np.array([0, 1, 0, 1])


class _Data:
    items, labels, class_names = X, Y, ("a", "b")

    def __len__(self) -> int:
        return len(Y)

    def subset(self, idx):
        return self


class _Member:
    def __init__(self, net) -> None:
        self.net = net

    def logits(self, ds, batch_size):
        with torch.no_grad():
            return self.net(torch.as_tensor(ds.items)).numpy()

    def inputs(self, ds):
        return [(torch.as_tensor(x), y) for x, y in zip(ds.items, ds.labels, strict=True)]


def _linear(w: list[list[float]]) -> torch.nn.Linear:
    net = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(w))
    return net


def _metrics(selected: int | None, epochs: int = 3) -> dict:
    return {"selected_epoch": selected, "epochs": epochs, "warnings": [], "history": [], "class_names": ["a", "b"],
            "student_started_trained": True}


def test_last_epoch_accuracy_is_measured_with_the_last_weights():
    selected = [[1.0, 0.0], [0.0, 1.0]]  # predicts the larger coordinate: all 4 right
    last = _linear([[0.0, 1.0], [1.0, 0.0]])  # the swap: all 4 wrong
    objective = Distillation("kd", None, keys=["x"], orders=[None], weights=[1.0])
    objective.end_epoch({"model": last}, None, {})  # the loop calls it after each epoch
    student, teacher = _Member(_linear(selected)), _Member(_linear(selected))
    m = _metrics(selected=2)
    _test_evidence(m, student, [teacher], _Data(), None, 4, objective.last_state)
    assert m["test_accuracy"] == 1.0 and m["last_epoch_test_accuracy"] == 0.0
    assert torch.equal(student.net.weight, torch.tensor(selected))  # the selected weights are back
    m = _metrics(selected=3)  # the last epoch is the selected one: the same number, no reload
    _test_evidence(m, student, [teacher], _Data(), None, 4, None)
    assert m["last_epoch_test_accuracy"] == 1.0
    m = _metrics(selected=2)  # resumed after the last epoch: nothing kept, nothing claimed
    _test_evidence(m, student, [teacher], _Data(), None, 4, None)
    assert m["last_epoch_test_accuracy"] is None
