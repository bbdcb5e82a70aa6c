"""The contract every registered domain adaptation method and label-free selector keeps (registration enrols it).

Methods: a one-epoch ``adapt`` on the tiny model writes an output whose reloaded network predicts what the returned
network predicts, whose card and ``metrics.json`` record the method and its options (and the recorded options rebuild
the method), and an unknown option is one clear error before anything is written.

Selectors: on a fixed tiny :class:`Evidence` every selector gives a finite score (and finite parts), the same score
twice, the same score when the classes are renamed (a label-free score cannot depend on which class is called 0), and
the same score when the examples are reordered, except where its definition samples examples by position (below);
without the labelled source hold-out a selector gives a finite score or NaN (undefined: ``adapt`` skips it), never an
exception."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import torch

from transferlab.data import load_dataset
from transferlab.domain import METHODS, SELECTORS, adapt
from transferlab.domain._selectors import Evidence
from transferlab.errors import TransferlabError

KW = dict(epochs=1, image_size=32, batch_size=8, bottleneck=16)


@pytest.fixture(scope="module")
def shift():
    src = load_dataset("builtin:digits").stratified_sample(60, seed=0)
    tgt = load_dataset("builtin:digits-m").stratified_sample(40, seed=0)
    return src, tgt


def _options(name: str) -> dict[str, int]:
    """A small discriminator where the method has one (the references' 1024 is slow here, and a non-default option
    gives the card something to record)."""
    return {"hidden": 32} if "hidden" in inspect.signature(METHODS.get(name)).parameters else {}


#: methods that take source data (the source-free ones keep their contract in test_source_free.py)
WITH_SOURCE = [m for m in METHODS.list() if not METHODS.meta(m).get("source_free")]


@pytest.mark.parametrize("name", WITH_SOURCE)
def test_one_epoch_saves_reloads_and_records_the_method(name, shift, tiny_model_ref, tmp_path):
    from transferlab.models import ImageTensors, load, read_card

    src, tgt = shift
    opts = _options(name)
    r = adapt(src, tgt, tiny_model_ref, name, out=tmp_path / "m", select="source_val", **opts, **KW)
    assert len(r.history) == 1 and math.isfinite(r.history[0]["train_loss"])
    card = read_card(tmp_path / "m")
    net = load(tmp_path / "m")
    data = ImageTensors(tgt, card.image_size, tuple(card.mean), tuple(card.std))
    x = torch.stack([data[i][0] for i in range(12)])
    r.model.eval()
    with torch.no_grad():
        a, b = r.model(x), net(x)
    assert a.shape == (12, src.num_classes) and float((a - b).abs().max()) <= 1e-6
    assert card.method == f"domain:{name}" and card.options == {"trade_off": 1.0, **opts}
    assert net.transferlab_config["method"] == f"domain:{name}"
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["method"] == name and saved["options"] == opts and saved["select"] == "source_val"
    recorded = {k: v for k, v in card.options.items() if k != "trade_off"}
    m = METHODS.get(name)(KW["bottleneck"], src.num_classes, 0, **recorded)  # the recorded options rebuild it
    if "hidden" in opts:
        assert sum(p.numel() for p in m.modules["discriminator"].parameters()) == sum(
            p.numel() for p in METHODS.get(name)(KW["bottleneck"], src.num_classes, 0, hidden=32)
            .modules["discriminator"].parameters())


@pytest.mark.parametrize("name", METHODS.list())
def test_unknown_option_is_refused_before_anything_is_written(name, shift, tiny_model_ref, tmp_path):
    src, tgt = shift
    free = METHODS.meta(name).get("source_free")
    args = (None, tgt, None) if free else (src, tgt, tiny_model_ref)  # the source model is never read
    with pytest.raises(TransferlabError, match=rf"{name}: no option 'bogus_option'.*its options"):
        adapt(*args, name, out=tmp_path / "never", bogus_option=1, source_model=tmp_path if free else None, **KW)
    assert not (tmp_path / "never").exists()


# -- selectors -----------------------------------------------------------------------------------------------------

#: selectors whose score samples examples by position, so reordering the examples draws another (seeded) sample:
#: exact invariance to the order of examples does not hold by definition. What must stay invariant is named.
ORDER_SAMPLED = {
    "transfer_score": ("its Hopkins term scores a seeded sample of target rows chosen by position; its other terms "
                       "(IM, uniformity) are order-free", ("im", "uniformity")),
    "guarded": ("its base score is transfer_score's (a seeded sample by position); its guard is order-free",
                ("balance", "source_accuracy", "passed")),
    "dev": ("its domain classifier is cross-fitted on folds drawn by position (StratifiedKFold, shuffled, seeded)",
            ()),
}


def _evidence(seed: int = 0, n_t: int = 40, n_s: int = 24, k: int = 3, d: int = 6) -> Evidence:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 3
    yt, ys = rng.integers(0, k, n_t), np.arange(n_s) % k
    zt = centres[yt] + rng.standard_normal((n_t, d)) + 0.5  # the target shifted a little
    zs = centres[ys] + rng.standard_normal((n_s, d))
    w = centres + 0.3 * rng.standard_normal((k, d))

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return Evidence(probs_t=softmax(zt @ w.T / 4), features_t=zt, classifier=w, probs_s=softmax(zs @ w.T / 4),
                    labels_s=ys, features_s=zs, seed=0)


def _scores(name: str, ev: Evidence) -> dict[str, float]:
    out = SELECTORS.get(name)(ev)
    assert isinstance(out, dict) and "score" in out, name
    return {k: float(v) for k, v in out.items()}


@pytest.mark.parametrize("name", SELECTORS.list())
def test_selector_is_finite_and_deterministic(name):
    a, b = _scores(name, _evidence()), _scores(name, _evidence())
    assert all(math.isfinite(v) for v in a.values()), a
    assert a == b


@pytest.mark.parametrize("name", SELECTORS.list())
def test_selector_ignores_the_names_of_the_classes(name):
    """Permute the classes everywhere (the prediction columns, the classifier's rows, the source labels)."""
    ev, perm = _evidence(), np.array([2, 0, 1])
    inv = np.argsort(perm)
    renamed = Evidence(probs_t=ev.probs_t[:, perm], features_t=ev.features_t, classifier=ev.classifier[perm],
                       probs_s=ev.probs_s[:, perm], labels_s=inv[ev.labels_s], features_s=ev.features_s, seed=ev.seed)
    a, b = _scores(name, ev), _scores(name, renamed)
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), (name, k)


@pytest.mark.parametrize("name", SELECTORS.list())
def test_selector_ignores_the_order_of_examples(name):
    ev = _evidence()
    rng = np.random.default_rng(1)
    pt, ps = rng.permutation(len(ev.probs_t)), rng.permutation(len(ev.labels_s))
    shuffled = Evidence(probs_t=ev.probs_t[pt], features_t=ev.features_t[pt], classifier=ev.classifier,
                        probs_s=ev.probs_s[ps], labels_s=ev.labels_s[ps], features_s=ev.features_s[ps], seed=ev.seed)
    a, b = _scores(name, ev), _scores(name, shuffled)
    _, invariant = ORDER_SAMPLED.get(name, (None, tuple(a)))
    for k in invariant:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), (name, k)
    assert math.isfinite(b["score"])


@pytest.mark.parametrize("name", SELECTORS.list())
def test_selector_without_source_evidence_is_finite_or_undefined(name):
    ev = _evidence()
    bare = Evidence(probs_t=ev.probs_t, features_t=ev.features_t, classifier=ev.classifier, seed=ev.seed)
    v = _scores(name, bare)["score"]
    assert math.isfinite(v) or math.isnan(v)
    if name in ("dev", "source_val"):  # defined on the labelled source hold-out only
        assert math.isnan(v)
