"""Sentence-pair data (issue 34 item 5): tables, memory, the built-in pair set, accuracy@k by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from transferlab.data import PAIR_SEP, accuracy_at_k, from_pairs, load_dataset, load_inputs, pair_texts
from transferlab.errors import DataError

ROWS = [("how do I reset my password", "Resetting a password", "match"),
        ("how do I reset my password", "Shipping times", "other"),
        ("where is my parcel", "Shipping times", "match"),
        ("where is my parcel", "Resetting a password", "other")]


def test_csv_jsonl_memory_and_dataframe_give_the_same_pairs(tmp_path):
    csv = tmp_path / "faq.csv"
    pd.DataFrame(ROWS, columns=["text_a", "text_b", "label"]).to_csv(csv, index=False)
    jsonl = tmp_path / "faq.jsonl"
    jsonl.write_text("".join(json.dumps(dict(zip(("text_a", "text_b", "label"), r, strict=True))) + "\n" for r in ROWS))
    a, b, y = ([r[i] for r in ROWS] for i in range(3))
    loaded = [load_dataset(csv, "train", test_fraction=0.01), load_dataset(jsonl, "train", test_fraction=0.01),
              load_dataset((a, b, y)), load_dataset(pd.DataFrame(ROWS, columns=["text_a", "text_b", "label"]))]
    for ds in loaded:
        kept = ds.meta.get("rows", range(len(ROWS)))
        assert ds.modality == "text" and ds.class_names == ("match", "other")
        assert pair_texts(ds) == ([a[i] for i in kept], [b[i] for i in kept])
        assert list(ds.items) == [a[i] + " [SEP] " + b[i] for i in kept]
    # a subset keeps its items' sides; pairs without labels read as joined texts
    sub = loaded[2].subset([3, 0])
    assert pair_texts(sub) == ([a[3], a[0]], [b[3], b[0]])
    inputs = load_inputs(pd.DataFrame(ROWS, columns=["text_a", "text_b", "label"]).drop(columns="label"))
    unl = tmp_path / "q.csv"
    pd.DataFrame(ROWS, columns=["text_a", "text_b", "label"]).drop(columns="label").to_csv(unl, index=False)
    assert list(load_inputs(unl).items) == list(loaded[2].items)
    assert list(inputs.items) == list(loaded[2].items)


def test_a_pair_with_an_empty_side_is_refused(tmp_path):
    with pytest.raises(DataError, match="empty side"):
        from_pairs(["q", ""], ["a", "b"], [0, 1])


def test_accuracy_at_k_by_hand():
    # query q1: candidates scored 0.9 (other), 0.7 (match), 0.1 (other) -> the match ranks 2nd
    # query q2: 0.2 (match), 0.2 (other), 0.05 (other)               -> a tie goes against the match: rank 2
    # query q3: 0.8 (match), 0.3 (other)                              -> rank 1
    # query q4: one candidate only -> left out; q5: no match -> left out
    a = ["q1"] * 3 + ["q2"] * 3 + ["q3"] * 2 + ["q4"] + ["q5"] * 2
    b = [f"c{i}" for i in range(len(a))]
    y = [0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0]
    scores = [0.9, 0.7, 0.1, 0.2, 0.2, 0.05, 0.8, 0.3, 0.9, 0.5, 0.4]
    ds = from_pairs(a, b, y, class_names=("other", "match"))
    got = accuracy_at_k(ds, scores, (1, 2))
    assert got == {"accuracy@1": pytest.approx(1 / 3), "accuracy@2": 1.0, "queries": 3,
                   "candidates": pytest.approx(8 / 3)}
    # class probabilities: the positive class's column ("match", index 1) is the score
    proba = np.stack([1 - np.asarray(scores), scores], 1)
    assert accuracy_at_k(ds, proba, (1,))["accuracy@1"] == pytest.approx(1 / 3)


def test_the_builtin_pair_set_follows_its_recipe():
    raw = {" ".join(t.split()) for t in load_dataset("builtin:rotten-tomatoes", "test").items}
    ds = load_dataset("builtin:rotten-tomatoes-pairs", "test")
    a, b = pair_texts(ds)
    assert len(ds) == 500 and ds.class_names == ("other", "match")
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(a):
        groups.setdefault(q, []).append(i)
    assert len(groups) == 100 and all(len(g) == 5 for g in groups.values())
    for q, g in groups.items():
        matches = [i for i in g if ds.labels[i] == 1]
        assert len(matches) == 1
        whole = " ".join((q + " " + b[matches[0]]).split())
        assert whole in raw  # the match continues the snippet it was cut from
    assert ds.items[0] == a[0] + PAIR_SEP + b[0]
    # perfect scores find every match; scores that ignore the pair find none (ties go against the match)
    assert accuracy_at_k(ds, ds.labels.astype(float))["accuracy@1"] == 1.0
    assert accuracy_at_k(ds, np.zeros(len(ds)))["accuracy@3"] == 0.0
