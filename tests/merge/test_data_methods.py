"""Fisher, RegMean and aTLAS: their statistics against closed forms, and the merges on real fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.merge.conftest import state_of

from transferlab.merge import MERGE_METHODS, merge
from transferlab.merge._fisher import diagonal_fisher
from transferlab.merge._regmean import RegMean, input_grams


def _linear_task(seed: int, n: int = 40) -> tuple[torch.nn.Linear, torch.utils.data.TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(3, 5, generator=g))
        net.bias.copy_(torch.randn(3, generator=g))
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return net, torch.utils.data.TensorDataset(x, y)


def test_fisher_is_the_mean_squared_score() -> None:
    """Softmax regression: d(-log p_y)/dW = (p - e_y) x^T, d/db = p - e_y."""
    net, data = _linear_task(0)
    f = diagonal_fisher(net, data, {"weight", "bias"})
    x, y = data.tensors
    p = torch.softmax(x @ net.weight.detach().T + net.bias.detach(), 1)
    r = p - torch.nn.functional.one_hot(y, 3)
    np.testing.assert_allclose(f["weight"].numpy(), (r[:, :, None] * x[:, None, :]).pow(2).mean(0).numpy(),
                               rtol=1e-10)
    np.testing.assert_allclose(f["bias"].numpy(), r.pow(2).mean(0).numpy(), rtol=1e-10)


def test_exact_fisher_is_the_expectation_under_the_prediction() -> None:
    """sum_y p_y (e_y - p)^2 x^2 per weight entry, (e_y - p)^2 per bias entry."""
    net, data = _linear_task(4, n=12)
    f = diagonal_fisher(net, data, {"weight", "bias"}, kind="exact")
    x, _ = data.tensors
    p = torch.softmax(x @ net.weight.detach().T + net.bias.detach(), 1)  # [n, C]
    eye = torch.eye(3, dtype=torch.float64)
    r2 = ((eye[None, :, :] - p[:, None, :]) ** 2 * p[:, :, None]).sum(1)  # [n, C]: sum_y p_y (e_y - p)_c^2
    np.testing.assert_allclose(f["weight"].numpy(), (r2[:, :, None] * x[:, None, :] ** 2).mean(0).numpy(), rtol=1e-10)
    np.testing.assert_allclose(f["bias"].numpy(), r2.mean(0).numpy(), rtol=1e-10)


def test_regmean_solves_the_joint_least_squares() -> None:
    """alpha=1: W = argmin sum_t ||X_t W^T - X_t W_t^T||^2 (numpy lstsq on the stacked problem)."""
    tasks = [_linear_task(s) for s in (1, 2, 3)]
    grams = [input_grams(net, data, {"weight"}) for net, data in tasks]
    m = RegMean(alpha=1.0)
    m._grams = grams
    base = torch.zeros(3, 5, dtype=torch.float64)
    got = m.merge_tensor("weight", base, [net.weight.detach() for net, _ in tasks])
    xs = np.concatenate([d.tensors[0].numpy() for _, d in tasks])
    ys = np.concatenate([d.tensors[0].numpy() @ net.weight.detach().numpy().T for net, d in tasks])
    want = np.linalg.lstsq(xs, ys, rcond=None)[0].T
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    x0 = tasks[0][1].tensors[0].numpy()
    np.testing.assert_allclose(grams[0]["weight"].numpy(), x0.T @ x0 / len(x0), rtol=1e-12)


def test_regmean_on_a_cnn_uses_1x1_convolutions(merge_zoo: dict) -> None:
    dirs, data = merge_zoo["dirs"][:2], [merge_zoo["a"], merge_zoo["b"]]
    rm = merge("regmean", merge_zoo["ref"], dirs, data=data, examples=12)
    avg = merge("average", merge_zoo["ref"], dirs)
    assert not torch.allclose(rm["blocks.1.0.conv_pwl.weight"], avg["blocks.1.0.conv_pwl.weight"])  # 1x1: RegMean
    torch.testing.assert_close(rm["conv_stem.weight"], avg["conv_stem.weight"])  # 3x3: averaged, as in the paper


def test_fisher_merge_is_a_per_entry_convex_combination(merge_zoo: dict) -> None:
    dirs, data = merge_zoo["dirs"][:2], [merge_zoo["a"], merge_zoo["b"]]
    got = merge("fisher", merge_zoo["ref"], dirs, data=data, examples=10)
    a, b = (state_of(d / "model.safetensors") for d in dirs)
    avg = merge("average", merge_zoo["ref"], dirs)
    moved = 0
    for k, v in got.items():
        if not v.is_floating_point():
            continue
        lo, hi = torch.minimum(a[k], b[k]), torch.maximum(a[k], b[k])
        assert bool(((v >= lo - 1e-6) & (v <= hi + 1e-6)).all()), k
        moved += int(not torch.allclose(v, avg[k]))
    assert moved > 10  # the Fisher weights differ from uniform


@pytest.mark.parametrize("objective", ["labels", "entropy"])
def test_atlas_learns_coefficients(merge_zoo: dict, objective: str) -> None:
    from transferlab.merge._api import _Job

    dirs, data = merge_zoo["dirs"][:2], [merge_zoo["a"], merge_zoo["b"]]
    job = _Job("atlas", merge_zoo["ref"], dirs, data=data, head_prefix=None, trust_pickle=False, progress=False,
               options={"examples": 18, "epochs": 8, "lr": 0.05, "objective": objective})
    job.method.prepare(job)
    coef = job.method.coefficients_
    assert coef.shape[0] == 2 and coef.shape[1] > 20  # one per task per parameter tensor
    assert not torch.allclose(coef, torch.full_like(coef, 0.3))
    hist = job.method.history_
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    # the merge uses the learned coefficients: theta = base + sum_t lam[t, j] tau[t, j]
    got = merge("atlas", merge_zoo["ref"], dirs, data=data, examples=18, epochs=8, lr=0.05, objective=objective)
    base = state_of(merge_zoo["root"] / "base.safetensors")
    a, b = (state_of(d / "model.safetensors") for d in dirs)
    j = job.method._index["conv_stem.weight"]
    want = base["conv_stem.weight"] + coef[0, j].float() * (a["conv_stem.weight"] - base["conv_stem.weight"]) \
        + coef[1, j].float() * (b["conv_stem.weight"] - base["conv_stem.weight"])
    torch.testing.assert_close(got["conv_stem.weight"], want, rtol=1e-5, atol=1e-6)
    job.close()


@pytest.mark.parametrize("name", MERGE_METHODS.list())
def test_contract_copies_of_the_base_merge_to_the_base(name: str, merge_zoo: dict, tmp_path) -> None:
    """Every registered method: fine-tuned models whose backbone equals the base merge back to the base, with its
    keys, shapes and dtypes."""
    import json
    import shutil

    from safetensors.torch import save_file

    base = state_of(merge_zoo["root"] / "base.safetensors")
    dirs = []
    for i, src in enumerate(merge_zoo["dirs"][:2]):
        d = tmp_path / f"copy{i}"
        shutil.copytree(src, d)
        own = state_of(src / "model.safetensors")
        save_file({k: (own[k] if k.startswith("classifier.") else base[k]).contiguous() for k in own},
                  str(d / "model.safetensors"))
        json.loads((d / "transferlab.json").read_text())
        dirs.append(d)
    opts = {"examples": 6} if MERGE_METHODS.meta(name).get("needs_data") else {}
    opts.update({"epochs": 1} if name == "atlas" else {})
    got = merge(name, merge_zoo["ref"], dirs, data=[merge_zoo["a"], merge_zoo["b"]], **opts)
    want = {k: v for k, v in base.items() if not k.startswith("classifier.")}
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6)
