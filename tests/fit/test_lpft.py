"""LP-FT (``head_init="probe"`` of finetune and partial): the head starts as the linear probe on the frozen pretrained
features, checked against scikit-learn's logistic regression on the network's own features computed here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import METHODS, fit
from transferlab.fit._registry import FitContext
from transferlab.models import ImageTensors, build, resolve


@pytest.fixture(scope="module")
def digits():
    return load_dataset("builtin:digits").stratified_sample(60, seed=3)


def _own_features_and_logits(net, ds, backbone):
    """The network's pooled features (its head's input) and logits, in eval mode, on the evaluation preprocessing."""
    data = ImageTensors(ds, 32, tuple(backbone.mean), tuple(backbone.std), interpolation=backbone.interpolation)
    x = torch.stack([data[i][0] for i in range(len(data))])
    net.eval()
    with torch.no_grad():
        feats = net.forward_head(net.forward_features(x), pre_logits=True)
        return feats.double().numpy(), net(x).double().numpy()


@pytest.mark.parametrize("method", ["finetune", "partial"])
def test_probe_head_predicts_as_sklearn_on_the_networks_own_features(method, digits, tiny_model_ref):
    from sklearn.linear_model import LogisticRegression

    backbone = resolve(tiny_model_ref)
    net = build(backbone, digits.num_classes).net
    prep = METHODS.get(method)(net, FitContext(backbone, digits, 32, seed=0), head_init="probe")
    feats, logits = _own_features_and_logits(prep.model, digits, backbone)
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(feats, digits.labels)
    # logits up to a constant per row (softmax's invariance): sklearn's decision function, to 0.1 % of their spread
    ours, ref = logits - logits.mean(1, keepdims=True), clf.decision_function(feats)
    ref = ref - ref.mean(1, keepdims=True)
    np.testing.assert_allclose(ours, ref, atol=1e-3 * np.abs(ref).max())
    assert (logits.argmax(1) == clf.predict(feats)).all() and (clf.predict(feats) == digits.labels).mean() > 0.5
    assert any(p.requires_grad for p in prep.model.get_classifier().parameters())  # and then it trains


def test_random_head_is_the_default_and_unchanged(digits, tiny_model_ref):
    backbone = resolve(tiny_model_ref)
    torch.manual_seed(0)
    net = build(backbone, digits.num_classes).net
    before = [p.detach().clone() for p in net.get_classifier().parameters()]
    METHODS.get("finetune")(net, FitContext(backbone, digits, 32, seed=0))
    assert all(torch.equal(a, b) for a, b in zip(before, net.get_classifier().parameters(), strict=True))


def test_fit_with_probe_head_trains_and_records_the_option(digits, tiny_model_ref, tmp_path):
    r = fit(digits, tiny_model_ref, "finetune", out=tmp_path / "m", epochs=1, image_size=32, val_fraction=0,
            head_init="probe")
    assert r.metrics["epochs"] == 1 and np.isfinite(r.history[0]["train_loss"])
    assert json.loads((tmp_path / "m" / "transferlab.json").read_text())["options"] == {"head_init": "probe"}


# linear_probe fits its head itself; head, bitfit and the adapters do not take it (finetune and partial do)
@pytest.mark.parametrize("method", ["head", "bitfit", "linear_probe", "lora"])
def test_other_methods_refuse_the_option(method, digits, tiny_model_ref):
    with pytest.raises(TransferlabError, match=rf"{method}: no option 'head_init'"):
        fit(digits, tiny_model_ref, method, epochs=1, image_size=32, head_init="probe")


def test_an_unknown_head_init_is_refused(digits, tiny_model_ref):
    with pytest.raises(TransferlabError, match=r"finetune: option head_init='lp' is not a valid"):
        fit(digits, tiny_model_ref, "finetune", epochs=1, image_size=32, head_init="lp")
