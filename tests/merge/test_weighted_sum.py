"""The streamed weighted sums (``average``, ``linear``, ``task_arithmetic``: ``_weighted``): equal to the formulas
computed by hand in float64 (half-precision inputs give outputs of their own dtype), to the task-vector path they
replace, and ``average`` never reads the base's tensors (only the mergeability check's sampled rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

# (method, options, the merge by hand: base, models -> merged)
CASES = [
    ("average", {}, lambda b, ms: sum(ms) / len(ms)),
    ("task_arithmetic", {"lam": 0.3}, lambda b, ms: b + 0.3 * sum(m - b for m in ms)),
    ("linear", {"weights": [1.0, 2.0, 5.0]}, lambda b, ms: (ms[0] + 2 * ms[1] + 5 * ms[2]) / 8),
    ("linear", {"weights": [1.0, -0.5, 2.0], "normalize": False, "lam": 0.7},
     lambda b, ms: b + 0.7 * ((ms[0] - b) - 0.5 * (ms[1] - b) + 2 * (ms[2] - b))),
]


def _states(dtype, seed: int = 0) -> tuple[dict, list[dict]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    base = {"a.weight": torch.randn(37, 11, generator=g), "a.bias": torch.randn(11, generator=g),
            "bn.running_var": torch.rand(5, generator=g) + 0.5, "bn.num_batches_tracked": torch.tensor(7)}
    models = [{k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
               for k, v in base.items()} for _ in range(3)]
    cast = lambda sd: {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}  # noqa: E731
    return cast(base), [cast(m) for m in models]


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-6), ("bfloat16", 2**-8), ("float16", 2**-11)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_weighted_sums_equal_the_formula_by_hand(case: int, dtype: str, tol: float) -> None:
    """Float32: within 2e-6 relative of the float64 formula; bfloat16 / float16 inputs: computed in float32, returned
    in the inputs' dtype, within half a unit in the last place (2^-8 / 2^-11 relative) of the float64 formula
    rounded. Batch-norm running statistics are the models' mean for every method; integer buffers the base's."""
    import torch

    from transferlab.merge import merge

    method, options, formula = CASES[case]
    base, models = _states(getattr(torch, dtype))
    out = merge(method, base, models, **options)
    for k in ("a.weight", "a.bias"):
        want = formula(base[k].double(), [m[k].double() for m in models])
        assert out[k].dtype == getattr(torch, dtype)
        assert torch.allclose(out[k].double(), want, rtol=tol, atol=tol * float(want.abs().max()))
    want = sum(m["bn.running_var"].double() for m in models) / 3
    assert torch.allclose(out["bn.running_var"].double(), want, rtol=tol, atol=0)
    assert int(out["bn.num_batches_tracked"]) == 7


@pytest.mark.parametrize("case", range(len(CASES)))
def test_streamed_sum_equals_the_task_vector_path(monkeypatch, tmp_path: Path, case: int) -> None:
    """From files (the mapped reads), the same tensors to 1e-6 relative as the task-vector path that every method
    takes (``base + lam * aggregate(tau)``, forced here by declaring the models not streamable)."""
    import torch
    from safetensors.torch import save_file

    from transferlab.merge import _job, merge

    method, options, _ = CASES[case]
    base, models = _states(torch.float32, seed=1)
    save_file(base, str(tmp_path / "base.safetensors"))
    paths = [tmp_path / f"m{i}.safetensors" for i in range(3)]
    for p, m in zip(paths, models, strict=True):
        save_file(m, str(p))
    fast = merge(method, tmp_path / "base.safetensors", paths, **options)
    monkeypatch.setattr(_job, "streamable", lambda tasks: False)
    slow = merge(method, tmp_path / "base.safetensors", paths, **options)
    assert fast.keys() == slow.keys()
    for k in fast:
        assert fast[k].dtype == slow[k].dtype
        assert torch.allclose(fast[k], slow[k], rtol=1e-6, atol=1e-6 * float(slow[k].abs().max())), k


def test_average_never_reads_the_base(monkeypatch, tmp_path: Path) -> None:
    """A base of NaNs: ``average`` (the models' mean) neither needs nor reads it, apart from the rows the
    mergeability check samples (no full read of a base tensor happens); ``task_arithmetic`` needs it and names it."""
    import torch
    from safetensors.torch import save_file

    from transferlab.errors import TransferlabError
    from transferlab.merge import _sources, merge, merge_models

    base, models = _states(torch.float32, seed=2)
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in base.items()},
              str(tmp_path / "base.safetensors"))
    paths = [tmp_path / f"m{i}.safetensors" for i in range(3)]
    for p, m in zip(paths, models, strict=True):
        save_file(m, str(p))
    out = merge("average", tmp_path / "base.safetensors", paths)
    assert torch.allclose(out["a.weight"], sum(m["a.weight"] for m in models) / 3, rtol=1e-6, atol=1e-6)
    with pytest.raises(TransferlabError, match="base: tensor a.bias holds NaN"):
        merge("task_arithmetic", tmp_path / "base.safetensors", paths)

    read = []
    real = _sources.SafetensorsSource._read
    monkeypatch.setattr(_sources.SafetensorsSource, "_read", lambda self, key: (read.append((self.label, key)),
                                                                                real(self, key))[1])
    r = merge_models("average", tmp_path / "base.safetensors", paths, tmp_path / "out")
    assert [k for label, k in read if label == "base"] == ["bn.num_batches_tracked"]  # an integer buffer: copied
    assert len(r.mergeability.models) == 3 and r.mergeability.norms == "exact"  # every tensor sampled whole


def test_the_check_of_a_streamed_sum_estimates_norms_from_sampled_rows(tmp_path: Path) -> None:
    """A 64 x 1024 weight (65,536 entries; SAMPLE 16,384: every 4th row), task vectors of +-0.01 * 2^t in every
    entry, so |tau_t| = 0.01 * 2^t * 256 exactly and from the rows alike; the base's norm from its rows 0, 4, ...,
    60 times 2. The exact check (``check_models``) uses the whole base. Both warn alike."""
    import torch
    from safetensors.torch import save_file

    from transferlab.merge import check_models, merge_models

    g = torch.Generator().manual_seed(4)
    base = {"w": torch.randn(64, 1024, generator=g)}
    sign = torch.where(torch.rand(64, 1024, generator=g) < 0.5, -1.0, 1.0)
    paths = []
    for t in range(3):
        paths.append(tmp_path / f"m{t}.safetensors")
        save_file({"w": base["w"] + 0.01 * 2**t * sign}, str(paths[-1]))
    paths.append(tmp_path / "foreign.safetensors")  # as far from the base as the base's own weights
    save_file({"w": torch.randn(64, 1024, generator=g)}, str(paths[-1]))
    save_file(base, str(tmp_path / "base.safetensors"))
    r = merge_models("average", tmp_path / "base.safetensors", paths, tmp_path / "out").mergeability
    exact = check_models(tmp_path / "base.safetensors", paths)
    assert r.norms == "sampled" and exact.norms == "exact"
    base_norm = float(base["w"].norm())
    sampled_base_norm = 2 * float(base["w"][::4].norm())  # rows 0, 4, ..., 60, scaled by sqrt(4)
    for t in range(3):
        assert r.models[t]["relative_norm"] == pytest.approx(0.01 * 2**t * 256 / sampled_base_norm, rel=1e-5)
        assert exact.models[t]["relative_norm"] == pytest.approx(0.01 * 2**t * 256 / base_norm, rel=1e-5)  # float32
    # the same warnings: the three small task vectors drowned by the foreign one, which is from another base
    assert [w.split(" ")[0] for w in r.warnings] == [w.split(" ")[0] for w in exact.warnings] == [
        "m0.safetensors's", "m1.safetensors's", "m2.safetensors's", "foreign.safetensors"]
    assert "not fine-tuned from this base" in r.warnings[3]


def test_a_broken_model_is_named_in_the_streamed_sum(tmp_path: Path) -> None:
    """NaN/inf is checked through the sum (one reduction per tensor); a non-finite sum re-reads the inputs the
    checked way, which names the model and the tensor, as the task-vector path does."""
    import torch
    from safetensors.torch import save_file

    from transferlab.errors import TransferlabError
    from transferlab.merge import merge

    base, models = _states(torch.float32, seed=3)
    models[1]["a.weight"][4, 2] = float("inf")
    save_file(base, str(tmp_path / "base.safetensors"))
    paths = [tmp_path / f"m{i}.safetensors" for i in range(3)]
    for p, m in zip(paths, models, strict=True):
        save_file(m, str(p))
    for method, opts in [("average", {}), ("linear", {"weights": [1.0, 0.0, 1.0]})]:  # weight 0: 0 * inf is NaN
        with pytest.raises(TransferlabError, match=r"m1\.safetensors.*tensor a\.weight holds NaN or inf"):
            merge(method, tmp_path / "base.safetensors", paths, **opts)
