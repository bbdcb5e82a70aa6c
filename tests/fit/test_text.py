"""fit on text backbones: the classifier module, every method on a tiny BERT, and the real built-in MiniLM."""

import json

import numpy as np
import pytest
import torch
from tests.conftest import make_text_dataset

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import fit
from transferlab.models import load, predict
from transferlab.models._text import TextTensors, build_text_classifier
from transferlab.zoo import extract_features, resolve_model


@pytest.fixture(scope="module")
def topics():
    return make_text_dataset(20, "train", seed=0), make_text_dataset(8, "test", seed=1)


def _texts(n: int = 6) -> object:
    return make_text_dataset(2, "train", seed=3).subset(np.arange(n))


@pytest.mark.parametrize("ref", ["builtin:minilm_l6", "tiny"])
def test_classifier_features_equal_the_zoo_features(ref, tiny_text_ref):
    """The head sits on exactly the features rank scored (ST: mean pooling + normalisation; hf: mean pooling)."""
    b = resolve_model(tiny_text_ref if ref == "tiny" else ref)
    b.max_length = 128
    net, tok = build_text_classifier(b, 3)
    ds = _texts()
    with torch.no_grad():
        ours = net.eval().forward_features(TextTensors(ds, tok, 128).x).numpy()
    theirs = extract_features(b, ds, cache=None).features
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    if ref != "tiny":
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)  # all-MiniLM normalises


def test_padding_does_not_change_an_example(tiny_text_ref):
    net, tok = build_text_classifier(resolve_model(tiny_text_ref), 3)
    ds = _texts()
    batch = TextTensors(ds, tok, 128).x
    with torch.no_grad():
        together = net.eval()(batch)
        alone = torch.cat([net(TextTensors(ds.subset([i]), tok, 128).x) for i in range(len(ds))])
    assert (batch[:, 1] == 0).any()  # the batch really is padded
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


METHODS = [("head", {}), ("bitfit", {}), ("partial", {"blocks": 1}), ("finetune", {"l2sp": 0.01, "bss": 0.001}),
           ("lora", {"r": 2}), ("dora", {"r": 2}), ("ia3", {}), ("adapter", {"r": 4}),
           ("adapter", {"r": 4, "insertion": "sequential", "placement": "both", "learned_scaling": True}),
           ("mam", {"r": 4, "prefix": 3}), ("sparse", {"density": 0.05})]


@pytest.mark.parametrize(("method", "options"), METHODS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(METHODS)])
def test_every_method_fits_saves_and_reloads_a_text_model(method, options, topics, tiny_text_ref, tmp_path):
    tr, te = topics
    out = tmp_path / "m"
    before = {k: v.clone() for k, v in build_text_classifier(resolve_model(tiny_text_ref), 3)[0].state_dict().items()}
    r = fit(tr, tiny_text_ref, method, test=te, out=out, epochs=2, batch_size=16, lr=5e-3, **options)
    m = r.metrics
    assert 0 < m["trainable_params"] < m["total_params"] or method == "finetune"
    cfg = json.loads((out / "transferlab.json").read_text())
    assert cfg["modality"] == "text" and cfg["architecture"]["library"] == "transformers"
    assert cfg["max_length"] == 128 and (out / "tokenizer" / "tokenizer.json").is_file()
    # no absolute path of the writing machine in the card (a text card stored site-packages' path, issue 29)
    assert str(tmp_path) not in (out / "transferlab.json").read_text()
    assert "_name_or_path" not in cfg["architecture"]["config"]
    # the saved model predicts what the fitted one did
    pred, probs, _ = predict(out, te)
    assert np.mean(pred == te.labels) == pytest.approx(m["test_accuracy"])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # the frozen parts stayed frozen: the embeddings move only where the method trains them
    state = r.model.state_dict()
    emb = next(k for k in state if k.endswith("word_embeddings.weight") and "lora" not in k)
    moved = not torch.equal(state[emb], before["bert.embeddings.word_embeddings.weight"])
    assert moved == (method in ("finetune", "sparse"))
    if method == "head":
        assert m["trainable_params"] == 32 * 3 + 3
    if method == "adapter" and options.get("insertion") == "sequential":  # attn + ffn, 2 layers, learned s
        assert m["trainable_params"] == 2 * 2 * (32 * 4 + 4 + 4 * 32 + 32 + 1) + 32 * 3 + 3


def test_parallel_text_adapter_is_the_unified_view_formula(tiny_text_ref):
    """h <- LayerNorm(dense(x) + s * delta(r) + r) for the FFN output block, r the FFN's input."""
    from transferlab.models import AdapterConfig, ResidualAdapted, inject_adapters_

    net, tok = build_text_classifier(resolve_model(tiny_text_ref), 3)
    x = TextTensors(_texts(), tok, 128).x
    with torch.no_grad():
        base = net.eval().forward_features(x)
    inject_adapters_(net, AdapterConfig(r=4, scaling=2.0))
    with torch.no_grad():
        torch.testing.assert_close(net.eval().forward_features(x), base)  # identity at init (up = 0)
    block = net.get_submodule("bert.encoder.layer.1.output")
    assert isinstance(block, ResidualAdapted)
    torch.nn.init.normal_(block.adapter.up.weight)
    h, r = torch.randn(2, 5, 64), torch.randn(2, 5, 32)
    inner = block.inner
    with torch.no_grad():
        delta = block.adapter.up(torch.relu(block.adapter.down(r))) * 2.0
        expected = inner.LayerNorm(inner.dense(h) + delta + r)
        torch.testing.assert_close(block(h, r), expected)


def test_mam_prefix_attention_matches_explicit_attention(tiny_text_ref):
    """Prefix keys/values joined to the tokens' own, softmax over both, padding still masked."""
    from transferlab.models._adapters import PrefixSelfAttention

    net, _ = build_text_classifier(resolve_model(tiny_text_ref), 3)
    attn = net.get_submodule("bert.encoder.layer.0.attention.self")
    pa = PrefixSelfAttention(attn, 3).eval()
    torch.nn.init.normal_(pa.prefix_v)
    x = torch.randn(1, 4, 32)
    mask = torch.tensor([[[[True, True, True, False]]]])  # the last token is padding
    with torch.no_grad():
        out, _ = pa(x, attention_mask=mask)
        q = attn.query(x).view(1, 4, 2, 16).transpose(1, 2)
        k = torch.cat([pa.prefix_k[None], attn.key(x).view(1, 4, 2, 16).transpose(1, 2)], 2)
        v = torch.cat([pa.prefix_v[None], attn.value(x).view(1, 4, 2, 16).transpose(1, 2)], 2)
        scores = q @ k.transpose(-1, -2) / 4.0
        scores[..., -1] = -torch.inf
        expected = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, 4, 32)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_partial_trains_the_last_layers(topics, tiny_text_ref):
    tr, te = topics
    r = fit(tr, tiny_text_ref, "partial", test=te, epochs=1, blocks=1)
    trained = {n for n, p in r.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("bert.encoder.layer.1.", "classifier.")) for n in trained)
    assert any(n.startswith("bert.encoder.layer.1.") for n in trained)


def test_scalearn_on_text_and_its_saved_model_needs_no_sources(topics, tiny_text_ref, tmp_path):
    import shutil

    tr, te = topics
    dirs = []
    for i, keep in enumerate([tr.labels < 2, tr.labels > 0]):
        fit(tr.subset(np.flatnonzero(keep)), tiny_text_ref, "adapter", test=te, out=tmp_path / f"s{i}", epochs=1,
            r=4, seed=i)
        dirs.append(str(tmp_path / f"s{i}"))
    r = fit(tr, tiny_text_ref, "scalearn", test=te, out=tmp_path / "t", epochs=1, sources=dirs)
    omegas = [m.omega for m in r.model.modules() if type(m).__name__ == "ScaledSources"]
    assert len(omegas) == 2 and r.metrics["trainable_params"] == sum(o.numel() for o in omegas) + 32 * 3 + 3
    for d in dirs:
        shutil.rmtree(d)  # the target model is self-contained
    pred, _, _ = predict(tmp_path / "t", te)
    assert np.mean(pred == te.labels) == pytest.approx(r.metrics["test_accuracy"])


def test_text_bad_inputs(topics, tiny_text_ref, tiny_model_ref, tmp_path):
    tr, te = topics
    digits = load_dataset("builtin:digits").stratified_sample(30)
    with pytest.raises(TransferlabError, match="takes text input but digits holds image data"):
        fit(digits, tiny_text_ref, "head")
    with pytest.raises(TransferlabError, match="takes image input but topics-train holds text data"):
        fit(tr, tiny_model_ref, "head")
    with pytest.raises(TransferlabError, match="cannot be fine-tuned"):
        fit(tr, "builtin:tfidf", "head")
    with pytest.raises(TransferlabError, match="max_length must lie in"):
        fit(tr, tiny_text_ref, "head", max_length=4)
    with pytest.raises(TransferlabError, match="placement 'block' is for CNNs"):
        fit(tr, tiny_text_ref, "adapter", placement="block")
    fit(tr, tiny_text_ref, "head", test=te, out=tmp_path / "h", epochs=1)
    with pytest.raises(TransferlabError, match="this model takes text data; digits holds image"):
        predict(tmp_path / "h", digits)
    with pytest.raises(TransferlabError, match="--init .* is a BertModel but the model to fit is a"):
        fit(digits, tiny_model_ref, "head", init=tmp_path / "h", image_size=32)


def test_init_continues_a_text_fit(topics, tiny_text_ref, tmp_path):
    tr, te = topics
    fit(tr, tiny_text_ref, "lora", test=te, out=tmp_path / "a", epochs=1, r=2)
    first = load(tmp_path / "a").merge_and_unload().state_dict()
    r = fit(tr, tiny_text_ref, "head", test=te, init=tmp_path / "a", epochs=1)
    q = "bert.encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(r.model.state_dict()[q], first[q])  # the LoRA-merged weights were the start


@pytest.mark.slow  # over 10 s on one core (issue 27)
def test_linear_probe_on_builtin_minilm(tmp_path):
    """The real MiniLM on the built-in reviews: the probe beats the majority class, in seconds."""
    tr = load_dataset("builtin:rotten-tomatoes").stratified_sample(200, seed=0)
    te = load_dataset("builtin:rotten-tomatoes", "test").stratified_sample(100, seed=0)
    r = fit(tr, "builtin:minilm_l6", "linear_probe", test=te, out=tmp_path / "lp")
    majority = np.bincount(te.labels).max() / len(te)
    assert r.metrics["test_accuracy"] > majority + 0.1
    pred, _, _ = predict(tmp_path / "lp", te)
    assert np.mean(pred == te.labels) == pytest.approx(r.metrics["test_accuracy"])
