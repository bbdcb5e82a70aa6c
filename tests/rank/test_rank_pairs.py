"""rank on sentence pairs (issue 34 item 5): the joint representation [u, v, |u - v|, u * v] of each model's own
features of the two sides, a shared TF-IDF space, zero-shot accuracy@k by cosine; fit and predict on pairs."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.data import Dataset, accuracy_at_k, from_pairs

QUESTIONS = ["how do I reset my password", "where is my parcel", "can I pay by card", "how do I close my account",
             "is there a student discount", "what are your opening hours"]
ANSWERS = ["To reset your password open settings", "Parcels arrive within three days", "We accept every card",
           "Close your account from the profile page", "Students get ten percent off", "We open at nine every day"]


def _faq() -> Dataset:
    a, b, y = [], [], []
    for i, q in enumerate(QUESTIONS):
        for ans in ANSWERS[:4] if i < 4 else ANSWERS[2:]:
            a.append(q)
            b.append(ans)
            y.append(int(ANSWERS.index(ans) == i))
    return from_pairs(a, b, y, class_names=("other", "match"), name="faq")


@pytest.mark.parametrize("ref", ["tiny", "builtin:tfidf"])
def test_pair_features_are_the_joint_of_each_sides_features(ref, tiny_text_ref):
    from transferlab.rank import rank
    from transferlab.rank._pairs import PairBackbone
    from transferlab.zoo import extract_features, resolve_model

    ds = _faq()
    ref = tiny_text_ref if ref == "tiny" else ref
    inner = resolve_model(ref)
    got = extract_features(PairBackbone(inner), ds).features
    a, b = ds.meta["text_a"], ds.meta["text_b"]
    sides = Dataset.from_texts(a + b, [0] * (2 * len(a)), class_names=("?",))  # one fit for a baseline: one space
    f = extract_features(inner, sides).features.astype(np.float64)
    u, v = f[:len(a)], f[len(a):]
    want = np.concatenate([u, v, np.abs(u - v), u * v], 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    r = rank(ds, [ref], metrics="logme")
    (m,) = r.models
    assert m.metadata["feature_dim"] == want.shape[1]
    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    assert m.metadata["retrieval"] == accuracy_at_k(ds, cos, (1, 3))


def test_a_pair_is_one_joint_sequence_for_a_bert_tokenizer(tiny_text_model_dir):
    """fit's cross-encoder: the joined text tokenises as the tokenizer's own pair encoding ([CLS] a [SEP] b [SEP])."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_text_model_dir))
    ds = _faq()
    joined = tok(list(ds.items))["input_ids"]
    pairs = tok(ds.meta["text_a"], ds.meta["text_b"])["input_ids"]
    assert joined == pairs


def test_fit_and_predict_on_pairs(tiny_text_ref, tmp_path):
    import pandas as pd

    from transferlab.fit import fit
    from transferlab.models import predict

    ds = _faq()
    r = fit(ds, tiny_text_ref, "head", test=ds, out=tmp_path / "m", epochs=1, batch_size=8, val_fraction=0)
    table = tmp_path / "pairs.csv"
    pd.DataFrame({"text_a": ds.meta["text_a"], "text_b": ds.meta["text_b"]}).to_csv(table, index=False)
    _, on_dataset, _ = predict(tmp_path / "m", ds)
    _, on_table, _ = predict(tmp_path / "m", table)  # unlabelled pairs: the same joined texts
    np.testing.assert_allclose(on_table, on_dataset, rtol=1e-5)
    assert np.mean(on_dataset.argmax(1) == ds.labels) == pytest.approx(r.metrics["test_accuracy"])
