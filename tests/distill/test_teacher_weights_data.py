"""multi_weighted scores its teachers on data they did not train on (issue 33 item 4): a teacher that memorised its
training examples is perfect on them and at chance elsewhere; scored on those examples it takes the weight, scored on
held-out or unlabelled examples the teacher that generalises does."""

from __future__ import annotations

import numpy as np
import pytest
from tests.distill._data import colours

from transferlab.distill._methods import METHODS, Setup
from transferlab.distill._weights import scoring_data, softmax_weights, teacher_scores
from transferlab.errors import TransferlabError

TRAIN = colours(10, "train", 0)
HELD = colours(10, "held", 1)
EXTRA = colours(10, "extra", 2)
MEMORISED = {arr.tobytes(): int(y) for arr, y in zip(TRAIN.items, TRAIN.labels, strict=True)}


class _Teacher:
    order = None

    def __init__(self, net: str) -> None:
        self.net = net

    def inputs(self, ds):
        return ds


def _fake_features(net, ds, order=None, batch_size=64):
    """``memoriser``: one-hot on its training examples' labels, a random class elsewhere; ``generaliser``: each
    image's mean colour (the classes' rule), right on most examples everywhere (noisy)."""
    rng = np.random.default_rng(len(ds) + len(net))
    if net == "memoriser":
        cls = np.array([MEMORISED.get(a.tobytes(), int(rng.integers(3))) for a in ds.items])
        f = np.eye(3)[cls] + rng.normal(0, 0.05, (len(ds), 3))
    else:
        f = np.stack([a.reshape(-1, 3).mean(0) / 255.0 for a in ds.items]) + rng.normal(0, 0.3, (len(ds), 3))
    e = np.exp(8 * (f - f.max(1, keepdims=True)))
    return f, e / e.sum(1, keepdims=True)


@pytest.fixture
def fake(monkeypatch):
    import transferlab.models as models

    monkeypatch.setattr(models, "features_and_probs", _fake_features)
    return [_Teacher("memoriser"), _Teacher("generaliser")]


def _setup(teachers, **parts) -> Setup:
    return Setup(None, "s", teachers, TRAIN, TRAIN, 16, 0, **parts)


def test_scored_on_their_own_training_examples_the_memoriser_wins(fake):
    fp = [_fake_features(t.net, TRAIN) for t in fake]
    scores, _ = teacher_scores([f for f, _ in fp], [p for _, p in fp], np.asarray(TRAIN.labels), "knn")
    assert softmax_weights(scores, 0.05)[0] > 0.5  # what the old hook (scoring on setup.train) gave


@pytest.mark.parametrize("on", ["auto", "heldout"])
def test_scored_on_held_out_examples_the_generaliser_wins(fake, on):
    method = METHODS.get("multi_weighted")(2, weight_data=on, weight_metric="knn", weight_temperature=0.05)
    setup = _setup(fake, heldout=HELD, unlabelled=EXTRA)
    w, table = method.teacher_weights(setup)
    assert w[1] > 0.9 and table["scored_on"] == "heldout" and table["n_scored"] == 30 and not setup.warnings


def test_scored_on_unlabelled_examples_the_majority_that_generalises_wins(fake):
    """Without labels, the examples take the teachers' averaged standardised prediction: the memoriser's confident
    guesses do not outvote two teachers that agree (two teachers that disagree could not be told apart)."""
    teachers = [*fake, _Teacher("generaliser, another")]
    method = METHODS.get("multi_weighted")(3, weight_data="unlabelled", weight_metric="knn", weight_temperature=0.05)
    w, table = method.teacher_weights(_setup(teachers, unlabelled=EXTRA))
    assert w[0] < 0.05 and table["scored_on"] == "unlabelled"


def test_the_students_training_part_is_never_scored(fake):
    setup = _setup(fake, val=HELD)
    ds, name, pseudo = scoring_data(setup, "auto")
    assert name == "val" and ds is HELD and not pseudo and "hold-out" in setup.warnings[0]
    with pytest.raises(TransferlabError, match="no data to score its teachers on"):
        scoring_data(_setup(fake), "auto")
    with pytest.raises(TransferlabError, match="weight_data must be"):
        METHODS.get("multi_weighted")(2, weight_data="train")
