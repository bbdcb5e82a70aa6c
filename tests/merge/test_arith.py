"""Data-free merges against their formulas, computed independently here in numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from transferlab.merge import merge, merge_models
from transferlab.merge._arith import kth_threshold


def _states(seed: int = 0, t: int = 3) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    base = {"w": torch.randn(6, 5, generator=g, dtype=torch.float64), "b": torch.randn(7, generator=g,
                                                                                         dtype=torch.float64)}
    models = [{k: v + torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in base.items()}
              for _ in range(t)]
    return base, models


def _taus(base: dict, models: list[dict], key: str) -> np.ndarray:
    return np.stack([(m[key] - base[key]).numpy() for m in models])


def test_task_arithmetic_and_average() -> None:
    base, models = _states()
    ta = merge("task_arithmetic", base, models, lam=0.4)
    avg = merge("average", base, models)
    for k in base:
        taus = _taus(base, models, k)
        np.testing.assert_allclose(ta[k].numpy(), base[k].numpy() + 0.4 * taus.sum(0), atol=1e-12)
        np.testing.assert_allclose(avg[k].numpy(), np.mean([m[k].numpy() for m in models], 0), atol=1e-12)


def test_ties_per_tensor_scope_trims_each_tensor() -> None:
    base, models = _states(1)
    got = merge("ties", base, models, density=0.3, scope="tensor", lam=0.5)
    for k in base:
        taus = _taus(base, models, k).reshape(len(models), -1)
        d = taus.shape[1]
        kk = d - int(d * 0.3)
        thr = np.sort(np.abs(taus), axis=1)[:, kk - 1:kk]
        trimmed = np.where(np.abs(taus) >= thr, taus, 0.0)
        s = np.sign(trimmed.sum(0))
        agree = np.where(np.sign(trimmed) == s, trimmed, 0.0)
        want = base[k].numpy().reshape(-1) + 0.5 * agree.sum(0) / np.maximum((agree != 0).sum(0), 1)
        np.testing.assert_allclose(got[k].numpy().reshape(-1), want, atol=1e-12)


def test_ties_frequency_sign() -> None:
    """Sign by count: three small positive entries outvote one large negative one (mass would elect negative)."""
    base = {"w": torch.zeros(1, dtype=torch.float64)}
    models = [{"w": torch.tensor([v], dtype=torch.float64)} for v in (0.1, 0.2, 0.3, -5.0)]
    assert float(merge("ties", base, models, density=1.0, sign="frequency")["w"]) == pytest.approx(0.2)
    assert float(merge("ties", base, models, density=1.0, sign="mass")["w"]) == pytest.approx(-5.0)


def test_dare_drops_and_rescales() -> None:
    g = torch.Generator().manual_seed(3)
    base = {"w": torch.zeros(200, 100, dtype=torch.float64)}
    tau = torch.randn(200, 100, generator=g, dtype=torch.float64)
    models = [{"w": tau}, {"w": torch.zeros_like(tau)}]
    got = merge("dare", base, models, p=0.7, lam=1.0, seed=5)["w"]
    kept = got != 0
    assert abs(float(kept.double().mean()) - 0.3) < 0.01  # 20 000 Bernoulli draws
    torch.testing.assert_close(got[kept], tau[kept] / 0.3)  # survivors rescaled by 1/(1-p)
    again = merge("dare", base, models, p=0.7, lam=1.0, seed=5)["w"]
    assert torch.equal(got, again)  # seeded
    assert not torch.equal(got, merge("dare", base, models, p=0.7, lam=1.0, seed=6)["w"])


def test_dare_ties_elects_signs_after_dropping() -> None:
    base = {"w": torch.zeros(4, dtype=torch.float64)}
    models = [{"w": torch.tensor([1.0, -2.0, 3.0, 1.0], dtype=torch.float64)},
              {"w": torch.tensor([-3.0, -2.0, 1.0, 1.0], dtype=torch.float64)}]
    got = merge("dare", base, models, p=0.0, ties=True)["w"]  # no drop: pure sign election + disjoint mean
    np.testing.assert_allclose(got.numpy(), [-3.0, -2.0, 2.0, 1.0])


def test_kth_threshold_keeps_ties_like_the_reference() -> None:
    m = np.array([1.0, 3.0, 3.0, 3.0, 2.0])
    assert kth_threshold(m.copy(), 0.2) == 3.0  # d - int(d*0.2) = 4th smallest; all three 3s survive
    assert kth_threshold(m.copy(), 1.0) is None


def test_streamed_file_equals_in_memory_result(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    base, models = _states(4, t=4)
    paths = []
    for i, m in enumerate(models):
        save_file(m, str(tmp_path / f"{i}.safetensors"))
        paths.append(tmp_path / f"{i}.safetensors")
    for method, opts in [("ties", {}), ("dare", {"p": 0.5, "ties": True}), ("task_arithmetic", {})]:
        want = merge(method, base, models, **opts)
        merge_models(method, base, paths, tmp_path / method, **opts)
        got = load_file(str(tmp_path / method / "model.safetensors"))
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_bad_options_are_clear() -> None:
    from transferlab.errors import TransferlabError

    base, models = _states()
    with pytest.raises(TransferlabError, match=r"density must lie in \(0, 1\]"):
        merge("ties", base, models, density=0)
    with pytest.raises(TransferlabError, match="unexpected keyword argument 'densty'"):
        merge("ties", base, models, densty=0.1)
    with pytest.raises(TransferlabError, match="unknown merge method 'tie'; known: atlas, average"):
        merge("tie", base, models)


def test_tied_tensors_are_merged_once(tmp_path: Path) -> None:
    """Two names of one tensor (tied embeddings): one DARE mask, one TIES threshold entry, the same result under
    both names, in memory and on disk."""
    from safetensors.torch import load_file

    def tied(seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        emb = torch.randn(50, 4, generator=g)
        return {"emb.weight": emb, "other.weight": torch.randn(30, generator=g), "lm_head.weight": emb}

    base, models = tied(0), [tied(1), tied(2), tied(3)]
    for method, opts in [("dare", {"p": 0.5}), ("ties", {}), ("task_arithmetic", {})]:  # the last one streamed
        got = merge(method, base, models, **opts)
        assert torch.equal(got["emb.weight"], got["lm_head.weight"])
        untied = merge(method, {k: v for k, v in base.items() if k != "lm_head.weight"},
                       [{k: v for k, v in m.items() if k != "lm_head.weight"} for m in models], **opts)
        torch.testing.assert_close(got["emb.weight"], untied["emb.weight"], rtol=0, atol=0)
        merge_models(method, base, models, tmp_path / method, **opts)
        disk = load_file(str(tmp_path / method / "model.safetensors"))
        assert torch.equal(disk["lm_head.weight"], untied["emb.weight"])


def test_ties_the_fine_tuning_broke_are_merged_apart() -> None:
    """Tied in the base, untied in the models: each name keeps its own update; tied integer buffers are fine."""
    emb = torch.zeros(3)
    ids = torch.arange(3)
    base = {"emb.weight": emb, "lm.weight": emb, "a.ids": ids, "b.ids": ids}
    models = [{"emb.weight": torch.ones(3), "lm.weight": torch.full((3,), 5.0), "a.ids": ids, "b.ids": ids}
              for _ in range(2)]
    got = merge("average", base, models)
    assert torch.equal(got["lm.weight"], torch.full((3,), 5.0)) and torch.equal(got["emb.weight"], torch.ones(3))
    assert torch.equal(got["b.ids"], ids)


@pytest.mark.parametrize("method, options", [
    ("ties", {}), ("ties", {"scope": "tensor"}), ("ties", {"sign": "frequency"}), ("dare", {"ties": True}),
    ("task_arithmetic", {}), ("average", {}),
])
def test_blocked_entrywise_merge_equals_the_whole_tensor_at_once(monkeypatch, tmp_path, method, options):
    """The entry-wise work runs in cache-sized blocks: bit-identical to one block per tensor, including entries whose
    elected sign is zero (patched at the end by their global index) in blocks after the first."""
    import torch

    from transferlab.merge import _arith, merge

    g = torch.Generator().manual_seed(0)
    base = {"a": torch.randn(300, 70, generator=g), "b": torch.randn(1000, generator=g)}
    tasks = []
    for _ in range(4):
        s = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()}
        tasks.append(s)
    # exact ties in late blocks: two models push +x and two -x at the same entries
    ties_at = (20_000, 20_001, 20_999)
    for idx in ties_at:
        base["a"].view(-1)[idx] = 0.0
        for t, sgn in enumerate((1, 1, -1, -1)):
            tasks[t]["a"].view(-1)[idx] = sgn * 5.0
    monkeypatch.setattr(_arith, "BLOCK", 1 << 30)
    whole = merge(method, base, tasks, **options)
    monkeypatch.setattr(_arith, "BLOCK", 4096)
    blocked = merge(method, base, tasks, **options)
    for k in base:
        assert torch.equal(whole[k], blocked[k]), k
    if method == "ties" and options.get("sign") != "frequency":  # the tie path ran: 0 written, then patched
        assert all(abs(float(blocked["a"].view(-1)[i])) == 5.0 for i in ties_at)
        # through files: the streaming writer patches those few entries in place
        from safetensors.torch import load_file, save_file

        from transferlab.merge import merge_models

        d = tmp_path / method
        d.mkdir()
        paths = []
        for i, st in enumerate([base, *tasks]):
            save_file({k: v.contiguous() for k, v in st.items()}, str(d / f"{i}.safetensors"))
            paths.append(d / f"{i}.safetensors")
        merge_models(method, paths[0], paths[1:], d / "out", **options)
        written = load_file(str(d / "out" / "model.safetensors"))
        for k in base:
            assert torch.equal(written[k], blocked[k]), k


@pytest.mark.parametrize("case", ["normal", "ties", "zeros", "adversarial"])
@pytest.mark.parametrize("density", [0.2, 0.01, 0.97])
def test_kth_threshold_is_the_exact_order_statistic(case, density):
    """The bracketed selection equals a full partition, including when the strided sample misses the value (every
    sampled entry zero) and the plain partition takes over."""
    from transferlab.merge._arith import kth_threshold

    rng = np.random.default_rng(3)
    n = 3_000_000
    x = np.abs(rng.standard_normal(n)).astype(np.float32)
    if case == "ties":
        x = np.round(x, 1)
    elif case == "zeros":
        x[: n // 2] = 0
    elif case == "adversarial":
        x[:: max(1, n // 100_000)] = 0  # exactly the entries the sample looks at
    k = n - int(n * density)
    expected = float(np.partition(x.copy(), k - 1)[k - 1])
    assert kth_threshold(x.copy(), density) == expected


@pytest.mark.parametrize("bracket", ["sampled", "missed"])
def test_one_pass_thresholds_equal_the_buffer_of_each_model(monkeypatch, tmp_path, bracket):
    """The thresholds from the sampled brackets and one counting pass equal those of one full buffer per model
    (the plain way); a bracket that misses falls back to the plain way for that model."""
    import torch
    from safetensors.torch import save_file

    from transferlab.merge import _arith, merge_models
    from transferlab.merge._job import _Job

    g = torch.Generator().manual_seed(1)
    base = {"a": torch.randn(500, 64, generator=g), "b": torch.randn(64, generator=g),
            "c": torch.randn(130, 7, generator=g)}
    paths = []
    for i in range(4):
        st = base if i == 0 else {k: v + 0.01 * i * torch.randn(v.shape, generator=g) for k, v in base.items()}
        save_file({k: v.contiguous() for k, v in st.items()}, str(tmp_path / f"{i}.safetensors"))
        paths.append(tmp_path / f"{i}.safetensors")
    if bracket == "missed":
        real = _arith.Arithmetic._brackets
        monkeypatch.setattr(_arith.Arithmetic, "_brackets",
                            lambda self, job, q, dt: [_arith._Bracket(-1.0, -0.5)] + real(self, job, q, dt)[1:])
    job = _Job("ties", paths[0], paths[1:], data=None, head_prefix=None, trust_pickle=False, progress=False,
               options={"density": 0.3})
    calls: list[list[int]] = []
    plain_way = _arith.Arithmetic._buffer_thresholds
    monkeypatch.setattr(_arith.Arithmetic, "_buffer_thresholds",
                        lambda self, job, tasks, n, dt: (calls.append(list(tasks)), plain_way(self, job, tasks, n, dt)))
    try:
        job.method.prepare(job)
        assert calls == ([] if bracket == "sampled" else [[0]])  # the one-pass way ran, or fell back for model 1
        fast = list(job.method._thresholds)
        plain_way(job.method, job, list(range(3)), sum(v.numel() for v in base.values()), np.float32)
        assert fast == job.method._thresholds and all(t is not None for t in fast)
    finally:
        job.close()
    merge_models("ties", paths[0], paths[1:], tmp_path / "out", density=0.3)  # and end to end
