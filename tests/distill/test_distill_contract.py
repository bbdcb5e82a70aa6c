"""Every registered distillation method, on the tiny colours: one short distillation that trains the student, save,
reload with the same predictions, a card whose method and options round-trip, and a clear error for an option it
does not take. Registration enrols a method here."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from transferlab.distill import METHODS, distill
from transferlab.errors import TransferlabError

KW = dict(epochs=1, image_size=16, batch_size=8)


def _options(name: str) -> dict[str, float]:
    """A non-default option where the method has a temperature (so the card's options say something)."""
    return {"temperature": 2.0} if "temperature" in inspect.signature(METHODS.get(name)).parameters else {}


def _student_weights(student_ref: str, train) -> dict[str, torch.Tensor]:
    from transferlab.distill._members import load_student

    return {k: v.clone() for k, v in load_student(student_ref, train, 16, False).net.state_dict().items()}


@pytest.mark.parametrize("name", METHODS.list())
def test_short_distillation_saves_and_reloads(name, colour_data, teacher_dir, student_ref, tmp_path):
    from transferlab.models import ImageTensors, load, read_card

    train, test = colour_data
    opts = _options(name)
    r = distill(train, [teacher_dir], student_ref, name, test=test, out=tmp_path / "s", **opts, **KW)
    assert len(r.history) == 1 and math.isfinite(r.history[0]["train_loss"])
    start = _student_weights(student_ref, train)
    trained = r.model.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start if start[k].is_floating_point())  # it learned
    card = read_card(tmp_path / "s")
    net = load(tmp_path / "s")
    data = ImageTensors(test, card.image_size, tuple(card.mean), tuple(card.std))
    x = torch.stack([data[i][0] for i in range(len(test))])
    r.model.eval()
    with torch.no_grad():
        assert float((net(x) - r.model(x)).abs().max()) <= 1e-6
    assert card.method == f"distill:{name}" and card.options == opts
    assert net.transferlab_config["method"] == f"distill:{name}" and net.transferlab_config["options"] == opts
    saved = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert saved["method"] == name and saved["options"] == opts
    METHODS.get(name)(1, **card.options)  # the recorded options rebuild the method


@pytest.mark.parametrize("name", METHODS.list())
def test_unknown_option_is_a_clear_error(name, colour_data, teacher_dir, student_ref, tmp_path):
    train, _ = colour_data
    with pytest.raises(TransferlabError, match=rf"{name}: no option 'bogus_option'"):
        distill(train, [teacher_dir], student_ref, name, out=tmp_path / "never", bogus_option=1, **KW)
    assert not (tmp_path / "never").exists()  # refused before any work


@pytest.fixture
def student_ref(tiny_timm_weights):
    return f"timm:test_efficientnet@{tiny_timm_weights}"
