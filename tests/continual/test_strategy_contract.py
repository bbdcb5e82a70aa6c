"""The contract every registered continual strategy keeps (enrolled by registering it): a two-task run saves an
output whose reloaded networks predict what the in-memory model predicted, every hook has a working default, and an
unknown option is one clear error before any work."""

from __future__ import annotations

import numpy as np
import pytest
from tests.continual.test_continual import four_colours

from transferlab.continual import STRATEGIES, Stream, Task, run
from transferlab.data import Dataset
from transferlab.errors import TransferlabError

OPTIONS = {"replay": {"buffer_size": 4}, "supsup": {"density": 0.3}, "exssnet": {"density": 0.3}, "ranpac": {"dim": 64}}


def _two_tasks() -> Stream:
    tr, te = four_colours(4, "train", 0), four_colours(3, "test", 1)

    def pick(ds, cls):
        keep = np.isin(ds.labels, cls)
        return Dataset(ds.name, "image", ds.items[keep], np.searchsorted(cls, ds.labels[keep]),
                       tuple(ds.class_names[c] for c in cls), split=ds.split)

    return Stream("task", [Task(f"t{k}", pick(tr, g), pick(te, g), [0, 1], [tr.class_names[c] for c in g])
                           for k, g in enumerate([[0, 1], [2, 3]])])


@pytest.mark.parametrize("name", STRATEGIES.list())
def test_a_saved_run_reloads_to_the_same_predictions(name, tiny_model_ref, tmp_path, monkeypatch):
    import torch

    from transferlab.continual._run import Run
    from transferlab.models import ImageTensors, load, predict_logits, read_card

    final: dict[int, torch.Tensor] = {}  # task j's logits of the in-memory model, at each row (the last one wins)
    accuracy = Run.accuracy

    def recording(self, j, upto, batch_size=64):
        out = accuracy(self, j, upto, batch_size)
        self.set_task(j)
        test = self.built.tensors(self.stream.tasks[j].test)
        with torch.inference_mode():
            x = torch.stack([test[i][0] for i in range(len(test))])
            final[j] = self.logits(self.modules, self.modules["backbone"](x), j, upto).clone()
        return out

    monkeypatch.setattr(Run, "accuracy", recording)
    s = _two_tasks()
    r = run(s, tiny_model_ref, name, out=tmp_path / name, epochs=1, lr=1e-2, image_size=16, batch_size=4,
            **OPTIONS.get(name, {}))
    assert r.metrics["strategy"] == name and r.matrix.shape[1] == 2 and 0 <= r.metrics["acc"] <= 1
    card = read_card(tmp_path / name)
    assert card.method == f"continual:{name}" and set(card.heads) == {"t0", "t1"}
    for j, task in enumerate(s.tasks):
        z = predict_logits(load(tmp_path / name, head=f"t{j}"), ImageTensors(task.test, 16, tuple(card.mean),
                                                                              tuple(card.std)), 16)
        assert np.abs(np.asarray(z) - final[j].numpy()).max() <= 1e-6, (name, j)
        assert float((np.asarray(z).argmax(1) == task.test.labels).mean()) == pytest.approx(r.matrix[-1, j])


@pytest.mark.parametrize("name", STRATEGIES.list())
def test_an_unknown_option_is_refused_before_any_work(name, tiny_model_ref, tmp_path):
    with pytest.raises(TransferlabError, match=rf"{name}: no option 'no_such_option'.*its options"):
        run(_two_tasks(), tiny_model_ref, name, out=tmp_path / "out", no_such_option=1)
    assert not (tmp_path / "out").exists()  # nothing claimed, nothing half-written
