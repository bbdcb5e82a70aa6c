"""LT-SFT sparse fine-tuning: exact sparsity, a diff that applies, removes and composes."""

import numpy as np
import pytest
import torch

from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.fit import fit
from transferlab.fit._sparse import SparseDiff, top_k_masks
from transferlab.models import load


def test_top_k_masks_keep_exactly_k_entries_globally_with_ties():
    base = {"a": torch.zeros(10), "b": torch.zeros(2, 5)}
    tuned = {"a": torch.arange(10.0), "b": torch.full((2, 5), 4.0)}  # many ties at 4
    masks = top_k_masks(base, tuned, ["a", "b"], density=0.3)  # k = 6 of 20
    assert sum(int(m.sum()) for m in masks.values()) == 6
    assert masks["a"][5:].all()  # 5..9 are strictly above every tie
    assert masks["b"].shape == (2, 5)
    with pytest.raises(TransferlabError, match="density"):
        top_k_masks(base, tuned, ["a"], density=0.0)


def test_top_k_masks_ties_before_the_larger_entries_of_a_later_tensor():
    """Ties in an early tensor must leave room for strictly larger entries of later tensors (a bug found on BERT)."""
    base = {"a": torch.zeros(4), "b": torch.zeros(4)}
    tuned = {"a": torch.ones(4), "b": torch.tensor([5.0, 5.0, 0.0, 0.0])}
    masks = top_k_masks(base, tuned, ["a", "b"], density=3 / 8)  # k = 3: both 5s and one of the tied 1s
    assert masks["b"].tolist() == [True, True, False, False]
    assert int(masks["a"].sum()) == 1


def test_sparse_diff_apply_remove_add_and_round_trip(tmp_path):
    lin = torch.nn.Linear(4, 3)
    base = {n: p.detach().clone() for n, p in lin.named_parameters()}
    tuned = {n: p + torch.randn_like(p) for n, p in base.items()}
    masks = top_k_masks(base, tuned, list(base), 0.25)
    d = SparseDiff.between(base, tuned, masks)
    assert d.nnz() == 4 and d.size() == 15
    d.apply_(lin)
    for n, p in lin.named_parameters():
        expected = base[n] + masks[n] * (tuned[n] - base[n])
        torch.testing.assert_close(p.detach(), expected)
    d.remove_(lin)
    for n, p in lin.named_parameters():
        torch.testing.assert_close(p.detach(), base[n])
    both = d + d  # composing a diff with itself doubles its values on the same entries
    assert both.nnz() == d.nnz()
    both.apply_(lin)
    d.save(tmp_path / "d.safetensors")
    back = SparseDiff.load(tmp_path / "d.safetensors")
    back.remove_(lin)
    back.remove_(lin)
    for n, p in lin.named_parameters():
        torch.testing.assert_close(p.detach(), base[n])
    with pytest.raises(TransferlabError, match="shape"):
        d.apply_(torch.nn.Linear(5, 3))


def test_sparse_fit_changes_only_the_chosen_entries(tiny_model_ref, tmp_path):
    from transferlab.zoo import resolve_model

    tr = load_dataset("builtin:digits").stratified_sample(120)
    te = load_dataset("builtin:digits", "test").stratified_sample(40)
    r = fit(tr, tiny_model_ref, "sparse", test=te, out=tmp_path / "s", epochs=1, image_size=32, density=0.02)
    base = resolve_model(tiny_model_ref).model.state_dict()
    tuned = r.model.state_dict()
    body = [k for k in base if not k.startswith("classifier") and "running" not in k and "num_batches" not in k]
    changed = sum(int((tuned[k] != base[k]).sum()) for k in body)
    total = sum(base[k].numel() for k in body)
    assert r.metrics["sparse_nnz"] == round(0.02 * total)
    head = sum(p.numel() for p in r.model.get_classifier().parameters())
    assert r.metrics["trainable_params"] == r.metrics["sparse_nnz"] + head
    assert 0 < changed <= r.metrics["sparse_nnz"]
    # statistics did not move in phase 2, and the saved diff rebuilds the fitted body from the pretrained one
    assert all(torch.equal(tuned[k], base[k]) for k in base if "running" in k)
    fresh = resolve_model(tiny_model_ref).model
    SparseDiff.load(tmp_path / "s" / "sparse_diff.safetensors").apply_(fresh)
    rebuilt = fresh.state_dict()
    assert all(torch.allclose(rebuilt[k], tuned[k], atol=1e-6) for k in body)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "s")(x), r.model.eval()(x))
    assert [h["phase"] for h in r.history] == [1, 2] and np.isfinite(r.metrics["test_accuracy"])
