"""The contract every registered pruning method keeps (registration enrols it), on the tiny six-colour source and
two-colour target: one finite score per source class, the same scores again under the same seed and whatever the
order of the target's examples, the kept classes are the best-scored ones, the manifest it writes reads back as the
kept classes of the source, and an option it does not take is refused before anything is written."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
from tests.prune.test_prune import setting  # noqa: F401  (the module-scoped fixture: source, target, surrogate)

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.prune import METHODS, prune

KEEP = 2 / 6


def _surrogate(name, surrogate):
    return str(surrogate) if METHODS.meta(name).get("needs_surrogate") else None


@pytest.mark.parametrize("name", METHODS.list())
def test_one_finite_score_per_source_class_deterministic_under_a_seed(name, setting):  # noqa: F811
    source, target, surrogate = setting
    classes = list(load_dataset(str(source)).class_names)
    a = prune(str(source), str(target), _surrogate(name, surrogate), name, keep=KEEP, seed=3)
    b = prune(str(source), str(target), _surrogate(name, surrogate), name, keep=KEEP, seed=3)
    assert list(a.scores) == classes and all(math.isfinite(v) for v in a.scores.values()), a.scores
    assert a.scores == b.scores and a.kept == b.kept
    best = sorted(range(len(classes)), key=lambda c: (-a.scores[classes[c]], c))[:round(KEEP * len(classes))]
    assert a.kept == [classes[c] for c in sorted(best)]  # the best-scored classes, in the source's order
    assert a.method == name and a.info["seed"] == 3


@pytest.mark.parametrize("name", METHODS.list())
def test_scores_ignore_the_order_of_the_target_examples(name, setting):  # noqa: F811
    source, target, surrogate = setting
    tgt = load_dataset(str(target), "train")
    shuffled = tgt.subset(np.random.default_rng(0).permutation(len(tgt)))
    a = prune(str(source), tgt, _surrogate(name, surrogate), name, keep=KEEP)
    b = prune(str(source), shuffled, _surrogate(name, surrogate), name, keep=KEEP)
    assert b.scores == pytest.approx(a.scores, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", METHODS.list())
def test_the_manifest_round_trips_to_the_kept_classes(name, setting, tmp_path):  # noqa: F811
    source, target, surrogate = setting
    r = prune(str(source), str(target), _surrogate(name, surrogate), name, keep=KEEP, out=tmp_path / "p")
    body = json.loads((tmp_path / "p" / "transferlab-dataset.json").read_text())
    assert body["method"] == name and body["scores"] == r.scores and r.manifest == tmp_path / "p" / \
        "transferlab-dataset.json"
    ds, full = load_dataset(tmp_path / "p"), load_dataset(str(source))
    assert list(ds.class_names) == r.kept and set(np.unique(ds.labels)) == set(range(len(r.kept)))
    names = np.array(full.class_names)[full.labels]
    assert len(ds) == int(np.isin(names, r.kept).sum())
    assert sorted(np.array(ds.class_names)[ds.labels]) == sorted(names[np.isin(names, r.kept)])


@pytest.mark.parametrize("name", METHODS.list())
def test_an_option_the_method_does_not_take_is_refused(name, setting, tmp_path):  # noqa: F811
    """A pruning method is ``fn(ctx)``: it takes no options, so ``prune`` accepts none beyond its own arguments and
    refuses any other before any work."""
    source, target, surrogate = setting
    assert list(inspect.signature(METHODS.get(name)).parameters) == ["ctx"], \
        f"{name}: prune passes a method only its Context; options would never reach it"
    with pytest.raises((TypeError, TransferlabError), match="bogus_option"):
        prune(str(source), str(target), _surrogate(name, surrogate), name, out=tmp_path / "never", bogus_option=1)
    assert not (tmp_path / "never").exists()
