"""TIES against the reference implementation: prateeky2806/ties-merging @ 44e7891fc84f3de7e4caa52664cd864ca3715e91,
``ties_merging(flat_task_checks, reset_thresh=K, merge_func="dis-mean")`` (src/ties_minimal.ipynb; the same
top-k mask / sign election / disjoint mean as src/utils/merge_utils.py), run in float64 on the fixed inputs stored in
data/ties_reference.json (generator: /work/refs/make_ties_vectors.py, outside the repository). The "ties" case has
integer task vectors: magnitude ties at the threshold and exact sign-mass cancellations (resolved by the model-wide
majority sign)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from transferlab.merge import merge, merge_models

REF = json.loads((Path(__file__).parent / "data" / "ties_reference.json").read_text())
SHAPES = {k: tuple(v) for k, v in REF["shapes"].items()}
CASES = [(c, k) for c in REF["cases"] for k in REF["cases"][c]["results"]]


def _split(flat: np.ndarray) -> dict[str, torch.Tensor]:
    out, pos = {}, 0
    for k, s in SHAPES.items():
        n = int(np.prod(s))
        out[k] = torch.tensor(flat[pos:pos + n], dtype=torch.float64).reshape(s)
        pos += n
    return out


def _flat(state: dict[str, torch.Tensor]) -> np.ndarray:
    return np.concatenate([state[k].reshape(-1).numpy() for k in SHAPES])


def _inputs(case: str) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]], np.ndarray]:
    """Base and fine-tuned state dicts. The integer case uses a zero base: ``(base + tau) - base`` would round some
    magnitudes to just below a tied threshold and change which entries survive; the random case keeps the stored
    base (its task vectors then carry one rounding)."""
    c = REF["cases"][case]
    base = np.asarray(c["base"]) if case == "random" else np.zeros(len(c["base"]))
    taus = np.asarray(c["task_vectors"])
    return _split(base), [_split(base + t) for t in taus], base


@pytest.mark.parametrize(("case", "k"), CASES)
def test_ties_matches_reference(case: str, k: str) -> None:
    base, models, base_flat = _inputs(case)
    merged = merge("ties", base, models, density=int(k) / 100)
    want = base_flat + np.asarray(REF["cases"][case]["results"][k]["merged"])
    # base + (base + tau - base): the task vectors carry one rounding of the additions
    np.testing.assert_allclose(_flat(merged), want, rtol=0, atol=1e-13)


def test_reference_case_exercises_the_majority_sign() -> None:
    """The integer case holds entries whose elected sign is 0 but which are not all zero: the patch path runs."""
    c = REF["cases"]["ties"]
    masked = np.asarray(c["results"]["20"]["masked"])
    tied = (masked.sum(0) == 0) & (masked != 0).any(0)
    assert tied.sum() > 5


@pytest.mark.parametrize("case", list(REF["cases"]))
def test_ties_streamed_to_disk_matches_reference(case: str, tmp_path: Path) -> None:
    """The file path: tensors written one by one, majority-sign entries patched in place afterwards."""
    from safetensors.torch import load_file, save_file

    base, models, base_flat = _inputs(case)
    paths = []
    for i, m in enumerate(models):
        save_file(m, str(tmp_path / f"m{i}.safetensors"))
        paths.append(tmp_path / f"m{i}.safetensors")
    save_file(base, str(tmp_path / "base.safetensors"))
    merge_models("ties", tmp_path / "base.safetensors", paths, tmp_path / "out", density=0.2)
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    want = base_flat + np.asarray(REF["cases"][case]["results"]["20"]["merged"])
    np.testing.assert_allclose(_flat(got), want, rtol=0, atol=1e-13)


def test_reference_density_one_is_rejected_there_and_means_no_trim_here() -> None:
    """K=100 crashes the reference (kthvalue(0)); here density=1 keeps every entry."""
    assert "100" in REF["cases"]["random"]["errors"]
    base, models, _ = _inputs("random")
    merged = merge("ties", base, models, density=1.0)
    taus = np.stack([_flat(m) - _flat(base) for m in models])
    elected = np.sign(taus.sum(0))
    agree = np.where(np.sign(taus) == elected, taus, 0.0)
    want = _flat(base) + agree.sum(0) / np.maximum((agree != 0).sum(0), 1)
    np.testing.assert_allclose(_flat(merged), want, atol=1e-12)
