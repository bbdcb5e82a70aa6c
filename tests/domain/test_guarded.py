"""The ``guarded`` selector (the default): a label-free score only among checkpoints that keep the source hold-out
accuracy within a tolerance of the reference's and whose target predictions are not collapsed; ``adapt`` falls back
to the reference (the source model, or the most source-accurate epoch) when none passes, and says so. Tested on
synthetic evidence where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from transferlab.domain import SELECTORS
from transferlab.domain._selectors import Evidence, balance

K, N = 4, 80


def _onehotish(labels, confidence):
    p = np.full((len(labels), K), (1 - confidence) / (K - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def _evidence(target_labels, confidence, source_correct, reference=None, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(K) * 6
    zt = centres[target_labels] + 0.3 * rng.standard_normal((N, K))
    ys = np.arange(40) % K
    pred_s = np.where(np.arange(40) < source_correct * 40, ys, (ys + 1) % K)
    return Evidence(probs_t=_onehotish(target_labels, confidence), features_t=zt, classifier=np.eye(K),
                    probs_s=_onehotish(pred_s, 0.9), labels_s=ys, features_s=centres[ys], seed=seed,
                    reference=reference)


BALANCED = np.arange(N) % K
COLLAPSED = np.zeros(N, dtype=int)


def test_balance_is_one_for_balanced_and_one_over_k_for_collapsed_predictions():
    assert balance(_onehotish(BALANCED, 0.97)) == pytest.approx(1.0, rel=1e-4)  # the 1e-5 inside the log
    assert balance(_onehotish(COLLAPSED, 1.0)) == pytest.approx(1 / K, rel=1e-3)


def test_a_collapsed_checkpoint_with_the_best_entropy_is_not_a_candidate():
    guarded = SELECTORS.get("guarded")
    ref = {"source_accuracy": 0.9, "balance": 1.0}
    good, collapsed = _evidence(BALANCED, 0.8, 0.9, ref), _evidence(COLLAPSED, 0.999, 0.9, ref)
    assert SELECTORS.get("entropy")(collapsed)["score"] > SELECTORS.get("entropy")(good)["score"]
    assert math.isnan(guarded(collapsed, base="entropy")["score"])
    assert guarded(good, base="entropy")["score"] == SELECTORS.get("entropy")(good)["score"]


def test_a_source_destroying_checkpoint_is_not_a_candidate_within_the_tolerance_it_is():
    guarded = SELECTORS.get("guarded")
    ref = {"source_accuracy": 0.9, "balance": 1.0}
    assert math.isnan(guarded(_evidence(BALANCED, 0.99, 0.5, ref))["score"])  # 40 points lost
    close = guarded(_evidence(BALANCED, 0.99, 0.9 - 0.025, ref), tolerance=0.05)  # 1 of 40 wrong: 2.5 points
    assert math.isfinite(close["score"]) and close["passed"] == 1.0
    assert math.isnan(guarded(_evidence(BALANCED, 0.99, 0.9 - 0.025, ref), tolerance=0.02)["score"])


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(K, K)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(x)


def _run(monkeypatch, epochs, source_free):
    """Score scripted epochs through the objective (weights set to the epoch number): (rows, the epoch the loop
    would keep, the objective, the net)."""
    import transferlab.domain._objective as obj_mod
    from transferlab.domain._methods import Method

    script = {"now": None}

    def fake_predict(net, data, batch_size, device):
        ev = script["now"]
        if data == "target":
            return ev.probs_t, ev.features_t, np.zeros(N, dtype=int)
        return ev.probs_s, ev.features_s, ev.labels_s

    monkeypatch.setattr(obj_mod, "predict_with_features", fake_predict)
    cls = obj_mod.SourceFreeAdaptation if source_free else obj_mod.DomainAdaptation
    kw = {} if source_free else {"trade_off": 1.0, "source_eval": "source"}
    o = cls("x", Method(), selectors=["guarded", "transfer_score"], select="guarded", target_eval="target", **kw)
    net = _Net()
    if source_free:
        script["now"] = _evidence(BALANCED, 0.6, 0.9)
        torch.nn.init.constant_(net.fc.weight, 0.0)
        o.setup({"model": net}, None)
    rows = []
    for e, ev in enumerate(epochs, 1):
        torch.nn.init.constant_(net.fc.weight, float(e))
        script["now"] = ev
        rows.append({"epoch": e, **o.epoch_scores({"model": net}, None)})
    kept = [r for r in rows if "guarded" in r]
    best = max(kept, key=lambda r: (r["guarded"], -r["epoch"]))["epoch"] if kept else None
    return rows, best, o, net


def test_with_source_data_the_best_score_among_guarded_epochs_is_kept(monkeypatch):
    epochs = [_evidence(BALANCED, 0.6, 0.9), _evidence(BALANCED, 0.99, 0.4),  # 2: best score, source destroyed
              _evidence(BALANCED, 0.8, 0.9), _evidence(COLLAPSED, 0.999, 0.9)]  # 4: collapsed
    rows, best, _, _ = _run(monkeypatch, epochs, source_free=False)
    ts = [r["transfer_score"] for r in rows]
    assert ts[1] == max(ts)  # the unguarded score would keep the source-destroying epoch
    assert best == 3 and [r["guarded.passed"] for r in rows] == [1.0, 0.0, 1.0, 0.0]


def test_with_source_data_no_passing_epoch_falls_back_to_the_most_source_accurate(monkeypatch):
    from transferlab.domain._records import kept_checkpoint

    epochs = [_evidence(COLLAPSED, 0.999, 0.9), _evidence(COLLAPSED, 0.999, 0.7)]
    rows, best, o, net = _run(monkeypatch, epochs, source_free=False)
    assert best is None
    history = [{**r, "oracle_accuracy": 0.1 * r["epoch"]} for r in rows]
    picks = {}
    epoch, acc, note = kept_checkpoint("guarded", best, picks, o.guard, net, history, 0.2)
    assert epoch == 1 and acc == pytest.approx(0.1) and note["fell_back"] and "epoch 1" in note["to"]
    assert float(net.fc.weight[0, 0].detach()) == 1.0  # epoch 1's weights restored
    assert picks["guarded"]["regret"] == pytest.approx(0.1)


def test_source_free_falls_back_to_the_source_model_when_every_epoch_collapses(monkeypatch):
    from transferlab.domain._records import kept_checkpoint

    rows, best, o, net = _run(monkeypatch, [_evidence(COLLAPSED, 0.99, 0.9)] * 2, source_free=True)
    assert best is None and all("guarded.source_accuracy" not in r for r in rows)  # no source hold-out
    epoch, _, note = kept_checkpoint("guarded", best, {}, o.guard, net, rows, None)
    assert epoch == 0 and note["to"] == "the source model before adaptation"
    assert float(net.fc.weight.detach().abs().max()) == 0.0  # the source model's weights back


def test_source_free_keeps_a_balanced_epoch(monkeypatch):
    rows, best, _, _ = _run(monkeypatch, [_evidence(COLLAPSED, 0.99, 0.9), _evidence(BALANCED, 0.9, 0.9)],
                            source_free=True)
    assert best == 2
