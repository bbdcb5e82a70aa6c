"""fit --pair-encoder (issue 34 item 5): the bi-encoder pair model. Its sides are each text tokenised alone, its head
at initialisation is the cosine of the two sides (checked against the raw transformers encoder, pooled by hand),
every text method fits, saves and reloads it with the same outputs, and the option fails clearly where it does not
apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.conftest import make_text_dataset

from transferlab.data import accuracy_at_k, from_pairs
from transferlab.errors import TransferlabError
from transferlab.fit import fit
from transferlab.models import BiEncoder, bi_encoder, init_head_at_cosine_, load
from transferlab.models._pair_encoder import separator_ids
from transferlab.models._text import TextTensors, build_text_classifier
from transferlab.zoo import resolve_model

QUESTIONS = ["when does the striker train with the team", "which sauce goes with garlic bread",
             "who plays drums on the album", "how long does the oven need for dinner",
             "where is the league final played this season", "what melody opens the concert"]
ANSWERS = ["the striker trains with the team after every match", "a spicy tomato sauce goes with garlic bread",
           "the band drummer plays drums on every album track", "the oven needs an hour for a big dinner",
           "the league final is played at the national stadium", "a slow guitar melody opens the concert"]


def _pairs():
    a, b, y = [], [], []
    for i, q in enumerate(QUESTIONS):
        for j in (i, (i + 1) % 6, (i + 2) % 6, (i + 4) % 6):
            a.append(q)
            b.append(ANSWERS[j])
            y.append(int(i == j))
    return from_pairs(a, b, y, class_names=("other", "match"), name="faq")


def _bi(ref, side_length=None):
    net, tok = build_text_classifier(resolve_model(ref), 2)
    return bi_encoder(net, tok, side_length=side_length), tok


@pytest.mark.parametrize("side_length", [None, 8])
def test_the_sides_are_each_text_tokenised_alone(side_length, tiny_text_ref):
    bi, tok = _bi(tiny_text_ref, side_length)
    ds = _pairs()
    side_a, side_b = bi.sides(TextTensors(ds, tok, 256).x)
    cut = {"truncation": True, "max_length": side_length} if side_length else {}
    for i, (a, b) in enumerate(zip(ds.meta["text_a"], ds.meta["text_b"], strict=True)):
        assert side_a[i, 0][side_a[i, 1] > 0].tolist() == tok(a, **cut)["input_ids"]
        assert side_b[i, 0][side_b[i, 1] > 0].tolist() == tok(b, **cut)["input_ids"]
        assert side_a[i, 1].tolist() == sorted(side_a[i, 1].tolist(), reverse=True)  # left-aligned: no holes
        assert side_b[i, 1].tolist() == sorted(side_b[i, 1].tolist(), reverse=True)


def test_the_head_at_initialisation_is_the_cosine_of_the_two_sides(tiny_text_model_dir, tiny_text_ref):
    """logit(match) - logit(other) = 10 (cos(u, v) - t), t the training cosines' quantile at the non-match share; u, v
    by hand: the raw transformers encoder on each text alone, mean-pooled over its tokens."""
    from transformers import AutoModel, AutoTokenizer

    ds = _pairs()
    enc, tok = AutoModel.from_pretrained(str(tiny_text_model_dir)).eval(), AutoTokenizer.from_pretrained(
        str(tiny_text_model_dir))

    def embed(text):
        with torch.no_grad():
            return enc(**tok(text, return_tensors="pt")).last_hidden_state[0].double().mean(0).numpy()

    u = np.stack([embed(t) for t in ds.meta["text_a"]])
    v = np.stack([embed(t) for t in ds.meta["text_b"]])
    cos = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    want_t = np.quantile(cos, 18 / 24)  # 18 of the 24 pairs are not matches
    bi, tok = _bi(tiny_text_ref)
    x = TextTensors(ds, tok, 256)
    t = init_head_at_cosine_(bi, x, ds.labels, positive=1)
    assert t == pytest.approx(want_t, abs=1e-5)
    with torch.no_grad():
        z = bi.eval()(x.x).double().numpy()
    np.testing.assert_allclose(z[:, 1] - z[:, 0], 10 * (cos - want_t), atol=1e-4)
    for q in QUESTIONS:  # each query's candidates in the cosine's order
        idx = [i for i, a in enumerate(ds.meta["text_a"]) if a == q]
        assert np.argsort(-z[idx, 1]).tolist() == np.argsort(-cos[idx]).tolist()
    assert accuracy_at_k(ds, z[:, 1]) == accuracy_at_k(ds, cos)


#: one method per way a fit is stored: the whole network, the trained tensors (a head), peft adapters, a method's
#: own modules (adapters: the ``inner`` structure), a probe on cached features
METHODS = [("finetune", {}), ("head", {}), ("lora", {"r": 2}), ("adapter", {"r": 4}),
           ("linear_probe", {})]


@pytest.mark.parametrize(("method", "options"), METHODS, ids=[m for m, _ in METHODS])
def test_every_kind_of_text_method_fits_saves_and_reloads_a_bi_encoder(method, options, tiny_text_ref, tmp_path):
    ds = _pairs()
    r = fit(ds, tiny_text_ref, method, test=ds, out=tmp_path / "m", epochs=1, batch_size=8, val_fraction=0, lr=1e-3,
            pair_encoder="bi", **options)
    card = json.loads((tmp_path / "m" / "transferlab.json").read_text())
    assert card["structure"]["kind"] == "bi_encoder" and r.metrics["pair_encoder"] == "bi"
    assert card["max_length"] == 256  # the joined pair: 128 tokens a side
    assert (card["structure"].get("inner") or {}).get("kind") == ("adapters" if method == "adapter" else None)
    loaded = load(tmp_path / "m")
    assert loaded.get_classifier().in_features == 4 * 32
    x = TextTensors(ds, loaded.transferlab_tokenizer, 256).x
    with torch.no_grad():
        fitted, again = r.model.eval()(x), loaded(x)
    assert (fitted - again).abs().max() <= 1e-5
    assert np.mean(fitted.argmax(1).numpy() == ds.labels) == pytest.approx(r.metrics["test_accuracy"])


def test_fit_starts_at_the_zero_shot_retrieval(tiny_text_ref, tmp_path):
    """The plumbing: a fit that barely moves (lr 1e-9) orders each query's candidates as the cosine does."""
    ds = _pairs()
    r = fit(ds, tiny_text_ref, "head", epochs=1, batch_size=8, val_fraction=0, lr=1e-9)  # pairs: bi by default
    assert r.metrics["pair_encoder"] == "bi" and isinstance(r.model, BiEncoder)
    bi, tok = _bi(tiny_text_ref)
    with torch.no_grad():
        u, v = bi.eval().encode_sides(TextTensors(ds, tok, 256).x)
        z = r.model.eval()(TextTensors(ds, tok, 256).x)
    cos = (u * v).sum(1).double().numpy()
    assert accuracy_at_k(ds, z[:, 1].numpy()) == accuracy_at_k(ds, cos)
    margin = (z[:, 1] - z[:, 0]).double().numpy()
    np.testing.assert_allclose(margin - margin.mean(), 10 * (cos - cos.mean()), atol=1e-3)


def test_a_cross_encoder_stays_available(tiny_text_ref):
    r = fit(_pairs(), tiny_text_ref, "head", epochs=1, batch_size=8, val_fraction=0, pair_encoder="cross")
    assert r.metrics["pair_encoder"] == "cross" and not isinstance(r.model, BiEncoder)
    assert r.model.get_classifier().in_features == 32


def test_the_option_fails_clearly_where_it_does_not_apply(tiny_text_ref, tiny_model_ref):
    with pytest.raises(TransferlabError, match="not sentence-pair data"):
        fit(make_text_dataset(4, seed=0), tiny_text_ref, "head", epochs=1, pair_encoder="bi")
    with pytest.raises(TransferlabError, match="needs a text model"):
        fit(_pairs(), tiny_model_ref, "head", epochs=1, pair_encoder="bi")
    with pytest.raises(TransferlabError, match="must be one of bi, cross"):
        fit(_pairs(), tiny_text_ref, "head", epochs=1, pair_encoder="siamese")


class _Tokenizer:
    """A tokenizer that reads " [SEP] " as plain text (as a RoBERTa or GPT-2 tokenizer does)."""

    sep_token_id, cls_token_id = 2, 0

    def __call__(self, text):
        return {"input_ids": [0, 10, 11, 12, 13, 2]}


def test_a_tokenizer_without_the_separator_is_refused_for_bi():
    with pytest.raises(TransferlabError, match="--pair-encoder cross"):
        separator_ids(_Tokenizer())


def test_the_cli_option(tiny_text_ref, tmp_path, capsys):
    import pandas as pd

    from transferlab.cli import main

    ds = _pairs()
    table = tmp_path / "pairs.csv"
    pd.DataFrame({"text_a": ds.meta["text_a"], "text_b": ds.meta["text_b"], "label": ds.labels}).to_csv(table,
                                                                                                        index=False)
    out = tmp_path / "m"
    assert main(["fit", str(table), "--model", tiny_text_ref, "--method", "head", "--epochs", "1", "--pair-encoder",
                 "cross", "--out", str(out), "-q"]) == 0
    assert json.loads((out / "metrics.json").read_text())["pair_encoder"] == "cross"
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": ds.meta["text_a"], "label": ds.labels}).to_csv(texts, index=False)
    assert main(["fit", str(texts), "--model", tiny_text_ref, "--method", "head", "--epochs", "1", "--pair-encoder",
                 "bi", "--out", str(tmp_path / "n"), "-q"]) == 2
    assert "not sentence-pair data" in capsys.readouterr().err
