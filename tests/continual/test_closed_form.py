"""The closed-form continual heads (issue 31): ``prototype`` (SimpleCIL) and ``ranpac`` against their reference
formulas on fixed inputs, order invariance, old task-incremental heads that never change, and a stream where a
frozen backbone's prototypes beat naive fine-tuning."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from transferlab.continual import run
from transferlab.continual._closed_form import RIDGES, Prototypes, RanPAC, choose_ridge
from transferlab.errors import TransferlabError

# The reference's own λ choice: RanPAC/RanPAC RanPAC.py @ 012927f, ``optimise_ridge_parameter`` run (its source
# extracted and executed as written, CPU) on the inputs of _ridge_case(...) permuted by
# np.random.default_rng(100 + s).permutation(n), which is what choose_ridge(h, y, seed=100 + s) shuffles by.
REFERENCE_RIDGES = {(60, 12, 3, 0, 1.0): 10.0, (200, 40, 5, 1, 3.0): 100.0, (80, 100, 4, 2, 0.3): 10.0,
                    (120, 30, 6, 3, 10.0): 10000.0}


def _ridge_case(n: int, m: int, c: int, s: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(s)
    lab = rng.integers(0, c, n)
    centres = rng.normal(size=(c, m))
    h = torch.relu(torch.tensor(centres[lab] + noise * rng.normal(size=(n, m))))
    return h, torch.nn.functional.one_hot(torch.tensor(lab), c).double()


@pytest.mark.parametrize("case", sorted(REFERENCE_RIDGES))
def test_the_ridge_search_chooses_the_references_lambda(case):
    h, y = _ridge_case(*case)
    assert choose_ridge(h, y, seed=100 + case[3]) == REFERENCE_RIDGES[case]


def test_the_ridge_search_is_the_papers_hold_out_mse_computed_directly():
    h, y = _ridge_case(90, 20, 4, 5, 2.0)
    perm = np.random.default_rng(3).permutation(90)
    hn, yn = h.numpy()[perm], y.numpy()[perm]
    n = 72  # 80 %
    losses = [np.mean((hn[n:] @ np.linalg.solve(hn[:n].T @ hn[:n] + r * np.eye(20), hn[:n].T @ yn[:n]) - yn[n:]) ** 2)
              for r in RIDGES]
    assert choose_ridge(h, y, seed=3) == RIDGES[int(np.argmin(losses))]


def _fake_run(kind: str, tasks: list[list[int]], dim: int, n_classes: int, seed: int = 0) -> SimpleNamespace:
    """What the closed-form strategies read of a run: the stream's kind and classes, the feature width, the heads."""
    heads = torch.nn.ModuleDict({"0": torch.nn.Linear(dim, n_classes)} if kind == "class" else
                                {str(i): torch.nn.Linear(dim, len(t)) for i, t in enumerate(tasks)})
    stream = SimpleNamespace(kind=kind, class_names=[str(c) for c in range(n_classes)],
                             tasks=[SimpleNamespace(classes=t) for t in tasks])
    return SimpleNamespace(stream=stream, dim=dim, seed=seed, modules={"backbone": torch.nn.Identity(),
                                                                       "heads": heads})


def _task_data(n_classes: int, tasks: list[list[int]], dim: int = 16) -> list[tuple[torch.Tensor, np.ndarray]]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_classes, dim)) * 2
    out = []
    for t in tasks:
        lab = np.repeat(t, 12)
        out.append((torch.tensor(centres[lab] + rng.normal(size=(len(lab), dim))), lab))
    return out


def test_prototypes_are_the_normalised_class_means():
    tasks = [[0, 1], [2, 3]]
    data = _task_data(4, tasks)
    r = _fake_run("class", tasks, 16, 4)
    s = Prototypes()
    for i, (f, y) in enumerate(data):
        s.add_task(r, i, f, y)
    w = r.modules["heads"]["0"].weight.detach().numpy()
    for c in range(4):
        f, y = data[c // 2]
        mean = f.numpy()[y == c].mean(0)
        np.testing.assert_allclose(w[c], mean / np.linalg.norm(mean), atol=1e-6)
    assert not r.modules["heads"]["0"].bias.any()


def test_prototype_logits_are_lamda_pilots_cosine_logits_times_the_feature_norm():
    # LAMDA-CL/LAMDA-PILOT @ 5240714, models/simplecil.py replace_fc: a class's row is the plain mean of its
    # (un-augmented) embeddings; backbone/linears.py CosineLinear: logits = sigma * normalize(f) @ normalize(W)ᵀ,
    # sigma initialised to 1 and never trained by SimpleCIL. Ours are those logits times ‖f‖: the same ranking of the
    # classes for every example, so the same predictions.
    tasks = [[0, 1, 2], [3, 4]]
    data = _task_data(5, tasks)
    r = _fake_run("class", tasks, 16, 5)
    s = Prototypes()
    for i, (f, y) in enumerate(data):
        s.add_task(r, i, f, y)
    protos = np.stack([data[c // 3][0].numpy()[data[c // 3][1] == c].mean(0) for c in range(5)])
    x = np.random.default_rng(7).normal(size=(40, 16)) * 3
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T
    with torch.no_grad():
        ours = r.modules["heads"]["0"](torch.tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(ours / np.linalg.norm(x, axis=1, keepdims=True), cos, atol=1e-5)
    assert (ours.argmax(1) == cos.argmax(1)).all()


def _ranpac(kind: str, order: list[int], tasks: list[list[int]], ridge: float | None, dim: int = 32):
    data = _task_data(6, tasks)
    r = _fake_run(kind, tasks, 16, 6)
    s = RanPAC(dim, ridge)
    s.install(r)
    for i in order:
        s.add_task(r, i, *data[i])
    return r, s, data


def test_ranpac_is_the_ridge_solution_on_the_projected_features_computed_directly():
    tasks = [[0, 1], [2, 3], [4, 5]]
    r, _, data = _ranpac("class", [0, 1, 2], tasks, ridge=0.5)
    head = r.modules["heads"]["0"]
    wr = head.project.weight.detach().double().numpy()
    assert np.allclose(wr, torch.randn(32, 16, generator=torch.Generator().manual_seed(0)).double().numpy())
    h = np.concatenate([np.maximum(f.numpy() @ wr.T, 0) for f, _ in data])
    y = np.eye(6)[np.concatenate([lab for _, lab in data])]
    w = np.linalg.solve(h.T @ h + 0.5 * np.eye(32), h.T @ y)
    np.testing.assert_allclose(head.fc.weight.detach().numpy(), w.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["prototype", "ranpac"])
def test_the_final_class_incremental_head_does_not_depend_on_the_task_order(strategy):
    tasks = [[0, 1], [2, 3], [4, 5]]
    heads = []
    for order in ([0, 1, 2], [2, 0, 1]):
        if strategy == "ranpac":
            r, _, _ = _ranpac("class", order, tasks, ridge=1.0)
        else:
            data = _task_data(6, tasks)
            r, s = _fake_run("class", tasks, 16, 6), Prototypes()
            for i in order:
                s.add_task(r, i, *data[i])
        heads.append({k: v.clone() for k, v in r.modules["heads"]["0"].state_dict().items()})
    for k in heads[0]:
        torch.testing.assert_close(heads[0][k], heads[1][k], rtol=1e-6, atol=1e-7)


def test_a_task_incremental_ranpac_head_never_changes_after_its_task():
    tasks = [[0, 1], [0, 1, 2], [0, 1]]
    r, s, data = _ranpac("task", [0], tasks, ridge=None)
    first = {k: v.clone() for k, v in r.modules["heads"]["0"].state_dict().items()}
    s.add_task(r, 1, *data[1])
    s.add_task(r, 2, *data[2])
    for k, v in r.modules["heads"]["0"].state_dict().items():
        assert torch.equal(v, first[k])
    assert len(s.ridges) == 3 and all(x in RIDGES for x in s.ridges)


def test_options_are_checked():
    from transferlab.continual import STRATEGIES

    for bad in ({"dim": 0}, {"ridge": -1.0}, {"ridge": float("nan")}):
        with pytest.raises(TransferlabError):
            STRATEGIES.get("ranpac")(**bad)


@pytest.mark.slow
def test_prototypes_on_a_frozen_backbone_beat_naive_fine_tuning_and_keep_every_task(tiny_model_ref):
    from tests.continual.test_strategy_contract import _two_tasks

    s = _two_tasks()
    out = {name: run(s, tiny_model_ref, name, epochs=2, lr=1e-2, image_size=16, batch_size=4,
                     **({"dim": 64} if name == "ranpac" else {}))
           for name in ("naive", "prototype", "ranpac")}
    for name in ("prototype", "ranpac"):  # task-incremental: a head never changes once its task is done
        m = out[name].matrix
        assert m[-1, 0] == m[0, 0] and out[name].metrics["bwt"] == 0.0
        assert out[name].metrics["acc"] >= out["naive"].metrics["acc"]


@pytest.mark.parametrize("epochs", [0, 1])
def test_ranpac_changes_the_backbone_only_when_asked_to_adapt_on_the_first_task(epochs, tiny_model_ref):
    from tests.continual.test_strategy_contract import _two_tasks

    from transferlab.models import build, resolve

    s = _two_tasks()
    before = build(resolve(tiny_model_ref), 0).net.state_dict()
    r = run(s, tiny_model_ref, "ranpac", epochs=1, lr=5e-2, image_size=16, batch_size=4, dim=64,
            first_task_epochs=epochs)
    after = r.modules["backbone"].state_dict()
    changed = [k for k, v in after.items() if k in before and not torch.equal(v, before[k])]
    assert bool(changed) == (epochs > 0), changed[:3]
    phases = [row.get("phase") for row in r.history[0]]
    assert phases == ["first-task adaptation"] * epochs + ["closed form"]
    assert r.metrics["bwt"] == 0.0  # adapted before any statistics: old heads still never change
    assert r.metrics["extra_params_per_task"] == 64 * 2 + 2  # a task's own fc, not the projection all heads share
    assert not any(p.requires_grad for p in r.modules["backbone"].parameters())
    with pytest.raises(TransferlabError, match="first_task_epochs"):
        run(s, tiny_model_ref, "ranpac", first_task_epochs=-1)
