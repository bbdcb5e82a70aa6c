"""``tsv`` and ``iso`` against a direct NumPy computation of the papers' formulas on small matrices (float64), their
handling of 1-D tensors and zero task vectors, and the properties that define them: Iso-C's merged delta has one
singular value; TSV's singular vectors are orthonormal and its singular values are the tasks' kept ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.merge import merge


def _np_polar(a):
    p, _, qh = np.linalg.svd(a, full_matrices=False)
    return p @ qh


def _np_tsv(deltas):
    t = len(deltas)
    k = max(1, min(deltas[0].shape) // t)
    us, ss, vs = [], [], []
    for d in deltas:
        u, s, vh = np.linalg.svd(d, full_matrices=False)
        us.append(u[:, :k]), ss.append(s[:k]), vs.append(vh[:k].T)
    return _np_polar(np.hstack(us)) @ np.diag(np.concatenate(ss)) @ _np_polar(np.hstack(vs)).T


def _np_iso(deltas):
    u, s, vh = np.linalg.svd(sum(deltas), full_matrices=False)
    return s.mean() * u @ vh


@pytest.fixture()
def models():
    rng = np.random.default_rng(0)
    base = {"w": rng.standard_normal((12, 9)), "conv": rng.standard_normal((6, 2, 3, 3)), "b": rng.standard_normal(12)}
    tasks = [{k: v + 0.1 * rng.standard_normal(v.shape) for k, v in base.items()} for _ in range(3)]
    as_t = lambda d: {k: torch.from_numpy(v) for k, v in d.items()}  # noqa: E731
    return base, tasks, as_t(base), [as_t(t) for t in tasks]


@pytest.mark.parametrize("method, ref", [("tsv", _np_tsv), ("iso", _np_iso)])
def test_equals_a_direct_numpy_computation(models, method, ref):
    base, tasks, tb, tt = models
    got = merge(method, tb, tt, lam=0.7)
    for k in ("w", "conv"):
        deltas = [t[k].reshape(t[k].shape[0], -1) - base[k].reshape(base[k].shape[0], -1) for t in tasks]
        want = base[k] + 0.7 * ref(deltas).reshape(base[k].shape)
        np.testing.assert_allclose(got[k].numpy(), want, rtol=1e-10, atol=1e-12)
        assert got[k].dtype == torch.float64
    # 1-D tensors: task arithmetic
    np.testing.assert_allclose(got["b"].numpy(), base["b"] + 0.7 * sum(t["b"] - base["b"] for t in tasks), rtol=1e-12)


def test_defining_properties(models):
    base, tasks, tb, tt = models
    d_iso = (merge("iso", tb, tt)["w"] - tb["w"]).numpy()
    s = np.linalg.svd(d_iso, compute_uv=False)
    assert np.ptp(s) < 1e-10 * s.max()  # isotropic: one singular value
    d_tsv = (merge("tsv", tb, tt)["w"] - tb["w"]).numpy()
    kept = np.sort(np.concatenate([np.linalg.svd(t["w"] - base["w"], compute_uv=False)[:3] for t in tasks]))
    np.testing.assert_allclose(np.sort(np.linalg.svd(d_tsv, compute_uv=False))[-9:], kept, rtol=1e-9)


def test_zero_task_vectors_and_integer_buffers(models):
    base, tasks, tb, tt = models
    same = [dict(tb), dict(tb)]
    for m in ("tsv", "iso"):
        got = merge(m, tb, same)
        assert all(torch.equal(got[k], tb[k]) for k in tb)  # copies of the base merge to the base
    ids = torch.arange(4)
    got = merge("tsv", {"w": tb["w"], "ids": ids}, [{"w": t["w"], "ids": ids} for t in tt])
    assert torch.equal(got["ids"], ids)
