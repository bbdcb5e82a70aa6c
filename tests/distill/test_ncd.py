"""Novel-class discovery (issue 33 item 5): clustering accuracy, Sinkhorn's marginals and the class-relation term
against hand computations, the split of a dataset into known and novel classes, and one tiny discovery run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.distill._data import colours

from transferlab.distill._ncd import discover, split_novel
from transferlab.distill._ncd_losses import cluster_accuracy, relation_kd, sinkhorn, swapped_prediction
from transferlab.errors import TransferlabError


def test_cluster_accuracy_by_hand():
    """Clusters (7, 7, 3, 3, 3, 9) against classes (0, 0, 1, 1, 2, 2): the best one-to-one map is 7→0 (2 right),
    3→1 (2 right), 9→2 (1 right): 5 of 6; a map that sends 3→2 instead gets 4."""
    assert cluster_accuracy([0, 0, 1, 1, 2, 2], [7, 7, 3, 3, 3, 9]) == pytest.approx(5 / 6)
    assert cluster_accuracy([5, 5, 6, 6], [1, 1, 0, 0]) == 1.0  # names do not matter, only the grouping
    assert cluster_accuracy([0, 1, 2, 3], [0, 0, 0, 0]) == 0.25  # one cluster can match one class only


def test_sinkhorn_by_hand_and_its_marginals():
    """ε = 1, one round, logits log([[1, 2], [3, 4]]): Q = [[1, 3], [2, 4]] / 10 (clusters × examples); rows to
    1/2 each: [[1/8, 3/8], [2/12, 4/12]]; columns to 1/2 each, then × 2 (and transposed back)."""
    z = torch.log(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    q = np.array([[1, 3], [2, 4]], dtype=np.float64) / 10
    q = q / q.sum(1, keepdims=True) / 2
    q = q / q.sum(0, keepdims=True) / 2
    np.testing.assert_allclose(sinkhorn(z, 1.0, 1).numpy(), (q * 2).T, rtol=1e-6)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 4, generator=g) * 0.3 + torch.tensor([0.5, 0.0, 0.0, 0.0])  # cluster 0 favoured
    for iters, tol in ((3, 0.05), (50, 1e-4)):
        a = sinkhorn(logits, 0.05, iters)
        np.testing.assert_allclose(a.sum(1).numpy(), 1.0, rtol=1e-5)  # each example: one unit
        np.testing.assert_allclose(a.sum(0).numpy() / 15, 1.0, atol=tol * 15)  # each cluster: B / K = 15
    assert float(torch.softmax(logits / 0.05, 1).sum(0)[0]) > 30  # without the balancing, cluster 0 takes most


def test_relation_kd_by_hand():
    """Two unlabelled examples, two known classes and one novel, T = 1: p = softmax(old), q = softmax over the new
    model's known part, w_b = its known-class mass over all three, divided by the mean of w."""
    new = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0]])
    old = np.array([[1.0, -1.0], [0.5, 0.5]])

    def sm(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q, w = sm(old), sm(new[:, :2]), sm(new)[:, :2].sum(1)
    expected = np.mean(-(p * np.log(q)).sum(1) * w / w.mean())
    got, mass = relation_kd(torch.tensor(new), torch.tensor(old), 2, temperature=1.0)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    assert float(mass) == pytest.approx(w.mean(), rel=1e-12)  # (e² + 1)/(e² + e + 1), (1 + e)/(1 + e + e³)
    t2, _ = relation_kd(torch.tensor(new), torch.tensor(old), 2, temperature=2.0)
    p, q, w = sm(old / 2), sm(new[:, :2] / 2), sm(new / 2)[:, :2].sum(1)
    assert float(t2) == pytest.approx(4 * np.mean(-(p * np.log(q)).sum(1) * w / w.mean()), rel=1e-9)


def test_relation_kd_over_two_views_divides_by_the_joint_mean():
    """Two views stacked [V, B, C] (kleinzcy/Cr-KD-NCD @ 0f55bea model/losses.py KD: the weight is divided by its mean
    over views and examples together, the loss averaged over both): not the mean of the two views' own terms."""
    new = np.array([[[2.0, 0.0, 1.0], [0.0, 1.0, 3.0]], [[4.0, 0.0, -2.0], [1.0, 1.0, 0.0]]])
    old = np.array([[[1.0, -1.0], [0.5, 0.5]], [[0.0, 2.0], [1.0, 0.0]]])

    def sm(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q, w = sm(old), sm(new[..., :2]), sm(new)[..., :2].sum(-1)  # [2, 2] weights, one mean over all four
    expected = np.mean(-(p * np.log(q)).sum(-1) * w / w.mean())
    got, mass = relation_kd(torch.tensor(new), torch.tensor(old), 2, temperature=1.0)
    assert float(got) == pytest.approx(expected, rel=1e-9) and float(mass) == pytest.approx(w.mean(), rel=1e-12)
    per_view = np.mean([np.mean(-(p[v] * np.log(q[v])).sum(-1) * w[v] / w[v].mean()) for v in range(2)])
    assert abs(expected - per_view) > 1e-3  # the case tells the two normalisations apart


def test_swapped_prediction_by_hand():
    z1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    t1, t2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # view 2 predicts t1: −log softmax(z2 / 0.1)[0]; view 1 predicts t2: −log softmax(z1 / 0.1)[1]; both −log σ(−10)
    expected = float(-torch.log(torch.sigmoid(torch.tensor(-10.0))))
    assert float(swapped_prediction([z1, z2], [t1, t2], 0.1)) == pytest.approx(expected, rel=1e-6)


def test_split_novel_relabels_and_refuses_bad_classes():
    ds = colours(4, "train", 0)
    known, novel, kn, nv = split_novel(ds, ["blue", "red"])
    assert kn == ["green"] and nv == ["blue", "red"] and len(known) == 4 and len(novel) == 8
    assert set(known.labels) == {0} and list(novel.labels[:4]) == [1, 1, 1, 1]  # red is novel class 1
    with pytest.raises(TransferlabError, match="some, not all"):
        split_novel(ds, ["red", "green", "blue"])
    with pytest.raises(TransferlabError, match="some, not all"):
        split_novel(ds, ["purple"])


def test_tiny_discovery_learns_the_known_head_and_logs_the_relation_term(tiny_timm_weights):
    train = colours(8, "train", 0)
    kw = dict(known_epochs=3, epochs=1, image_size=16, batch_size=8, lr=3e-3)
    with_kd = discover(train, ["blue"], f"timm:test_efficientnet@{tiny_timm_weights}", kd_weight=0.1, **kw)
    m = with_kd.metrics
    assert m["n_known"] == 16 and m["n_unlabelled"] == 8 and len(m["known_history"]) == 3
    assert m["known_history"][-1]["train_accuracy"] > 0.6  # red vs green, separable
    assert m["history"][0]["train_relation_kd"] > 0
    assert 0 < m["history"][0]["train_relation_weight"] < 1  # the known classes' mass on unlabelled examples
    assert 0 < m["history"][0]["train_relation_target_entropy"] <= 1  # over the two known classes, in log 2 units
    plain = discover(train, ["blue"], f"timm:test_efficientnet@{tiny_timm_weights}", kd_weight=0.0, **kw).metrics
    assert "train_relation_kd" not in plain["history"][0]
    assert plain["known_history"] == m["known_history"]  # the same pretraining: only the discovery run differs
    with pytest.raises(TransferlabError, match="kd_temperature must be a finite number > 0"):
        discover(train, ["blue"], "x", kd_temperature=0.0)


@pytest.mark.parametrize(("option", "message"), [
    ("kd_temprature=1", "got kd_temprature"),  # a typo: was a TypeError traceback from discover()
    ("epochs=3", "got epochs"),  # the command's own --epochs: was 'got multiple values for keyword argument'
    ("kd_weight=high", "kd_weight"),  # the wrong type: was numpy's TypeError from the range check
])
def test_discovery_options_are_checked_before_any_work(option, message, tmp_path, capsys):
    from transferlab.cli import main

    rc = main(["distill", "builtin:digits", "--student", "builtin:small_resnet_shapes", "--novel-classes", "5,6",
               "--option", option, "--out", str(tmp_path / "d"), "-q"])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
