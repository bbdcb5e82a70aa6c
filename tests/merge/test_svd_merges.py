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


def test_tsv_compress_rebuilds_each_task_from_its_low_rank_factors(merge_zoo, tmp_path):
    """``tsv_compress`` writes the base and, per task, the top 1/T singular components of every matrix's task vector
    (1-D tensors and normalisation statistics whole): ``load(out, head=task)`` is the base plus exactly that
    truncation, with the task's own head and statistics."""
    from tests.merge.conftest import state_of

    from transferlab.errors import TransferlabError
    from transferlab.merge import merge_models
    from transferlab.models import load

    dirs = merge_zoo["dirs"][:2]
    r = merge_models("tsv_compress", merge_zoo["ref"], dirs, tmp_path / "c", names=["a", "b"])
    card = __import__("json").loads((tmp_path / "c" / "transferlab.json").read_text())
    assert card["merge"]["task_weights"] == {"a": "tasks/a.safetensors", "b": "tasks/b.safetensors"}
    base = state_of(merge_zoo["root"] / "base.safetensors")
    for name, d in zip(("a", "b"), dirs, strict=True):
        own = state_of(d / "model.safetensors")
        got = load(tmp_path / "c", head=name).state_dict()
        for k, w in base.items():
            if not w.is_floating_point() or k.startswith("classifier."):
                continue
            if w.ndim >= 2:
                delta = (own[k] - w).double().reshape(w.shape[0], -1).numpy()
                u, s, vh = np.linalg.svd(delta, full_matrices=False)
                kk = max(1, len(s) // 2)
                want = w.double().numpy() + ((u[:, :kk] * s[:kk]) @ vh[:kk]).reshape(w.shape)
                np.testing.assert_allclose(got[k].double().numpy(), want, rtol=1e-4, atol=1e-5, err_msg=k)
            else:  # biases, norm weights and running statistics: the task's own
                assert torch.equal(got[k], own[k]), k
        assert torch.equal(got["classifier.weight"], own["classifier.weight"])  # its own head
    assert load(tmp_path / "c").state_dict()["classifier.weight"].shape[0] == 3  # default: the first task's model
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "c" / "tasks").iterdir()}
    assert all(v < (tmp_path / "c" / "model.safetensors").stat().st_size for v in sizes.values())
    assert r.options == {"share": None}
    with pytest.raises(TransferlabError, match="share must lie in"):
        merge_models("tsv_compress", merge_zoo["ref"], dirs, tmp_path / "d", share=0)


def test_iso_keeps_a_rank_deficient_sum_in_its_range() -> None:
    """3 e1 e1^T + its copy x 2 (rank 1, as a sum of LoRA products is rank <= T r): its one non-zero singular value is
    its own mean, so iso returns the sum itself, 9 e1 e1^T -- not the mean over all four singular values (9/4) along
    e1 plus 9/4 along three directions the SVD picks at random."""
    import torch

    from transferlab.merge import merge

    e = torch.zeros(4, 4, dtype=torch.float64)
    e[0, 0] = 1.0
    base = {"w": torch.eye(4, dtype=torch.float64)}
    got = merge("iso", base, [{"w": base["w"] + 3 * e}, {"w": base["w"] + 6 * e}])["w"]
    assert torch.allclose(got, base["w"] + 9 * e, atol=1e-12)
