"""The contract every registered merge method keeps (registration enrols it), on tiny fit outputs: two copies of one
fine-tuned model merge back to that model where the method's definition says so (the exceptions below say why not),
the output reloads with every task's head and predicts, ``merge.json`` and the recipe ``merge.yaml`` record the
method's resolved options, the recipe repeats the merge to the same tensors, and an unknown option is one clear error
before anything is written."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pytest
import torch
from tests.merge.conftest import state_of

from transferlab.errors import TransferlabError
from transferlab.merge import MERGE_METHODS, merge, merge_models, resolve_recipe, run_recipe

N = 2  # copies merged

#: options under which a method's definition returns N copies of one model unchanged (theta = base + tau each):
#: the sums of task vectors must be scaled by 1/N, TIES must keep every entry (its default trims 80 %), DARE must drop
#: nothing, TSV-C must keep every singular component. Methods not named here must do it with their defaults (the mean
#: of equal models, Fisher- or Gram-weighted means of equal models are that model).
IDENTITY_OPTIONS: dict[str, dict[str, object]] = {
    "task_arithmetic": {"lam": 1 / N},
    "ties": {"density": 1.0},  # trim nothing; all signs agree; the disjoint mean of equal vectors is the vector
    "dare": {"p": 0.0, "lam": 1 / N},
    "tsv_compress": {"share": 1.0},  # each task rebuilt from all its singular components
}

#: methods whose definition does not give N equal models back, whatever their options
NOT_IDENTITY = {
    "tsv": "keeps each task's top 1/N singular components only and replaces the stacked singular vectors by their "
           "orthogonal polar factor: N equal task vectors are not decorrelated back into one",
    "iso": "flattens the spectrum of the summed task vector (every singular value replaced by their mean): equal "
           "models come back only if their task vector's spectrum is already flat",
    "atlas": "learns one free coefficient per task vector per tensor; nothing makes the coefficients of equal task "
             "vectors sum to 1",
    "wudi": "starts from the sum of the task vectors (N tau for N equal models) and takes a fixed number of Adam steps "
            "of a fixed size towards its minimiser (tau itself for equal models): the reference's 400 steps of 1e-5 "
            "stop on the way",
}


def _options(name: str) -> dict[str, object]:
    params = inspect.signature(MERGE_METHODS.get(name)).parameters
    opts: dict[str, object] = {"examples": 6} if "examples" in params else {}  # tiny statistics / training sets
    opts.update({"epochs": 1} if "epochs" in params else {})
    opts.update({"steps": 20} if "steps" in params else {})  # wudi: few optimiser steps per matrix
    opts.update(IDENTITY_OPTIONS.get(name, {}))
    return opts


@pytest.fixture(scope="module")
def copies(merge_zoo, tmp_path_factory):
    """N copies of one full fine-tune (its own head), with the dataset it was fitted on as a path (a recipe can only
    repeat a merge whose inputs are paths)."""
    root = tmp_path_factory.mktemp("copies")
    dirs = [shutil.copytree(merge_zoo["dirs"][0], root / f"copy{i}") for i in range(N)]
    return {"ref": merge_zoo["ref"], "dirs": dirs, "data": [str(merge_zoo["root"] / "imgs_a")] * N,
            "model": merge_zoo["dirs"][0], "dataset": merge_zoo["a"]}


@pytest.fixture(scope="module")
def merged(copies, tmp_path_factory):
    """name -> (output directory, MergeResult): one merge per method, shared by the tests below."""
    done: dict[str, tuple[Path, object]] = {}
    root = tmp_path_factory.mktemp("merged")

    def get(name: str):
        if name not in done:
            out = root / name
            r = merge_models(name, copies["ref"], copies["dirs"], out, data=copies["data"],
                             names=[f"t{i}" for i in range(N)], **_options(name))
            done[name] = (out, r)
        return done[name]

    return get


def _tensors(out: Path) -> dict[str, torch.Tensor]:
    found = {}
    for f in sorted(out.rglob("*.safetensors")):
        found.update({f"{f.relative_to(out)}:{k}": v for k, v in state_of(f).items()})
    return found


def _x(copies, net):
    from transferlab.models import model_inputs

    data = model_inputs(net, copies["dataset"])
    return torch.stack([data[i][0] for i in range(6)])


@pytest.mark.parametrize("name", MERGE_METHODS.list())
def test_copies_of_one_model_merge_back_to_it_and_the_output_predicts(name, copies, merged):
    from transferlab.models import load

    out, r = merged(name)
    assert r.tasks == [f"t{i}" for i in range(N)] and set(r.heads) == set(r.tasks)
    own = load(copies["model"])
    own.eval()
    with torch.no_grad():
        want = own(_x(copies, own))
    for task in r.tasks:
        net = load(out, head=task)  # every task's model: the merged network (or, tsv_compress, its own) + its head
        net.eval()
        with torch.no_grad():
            got = net(_x(copies, net))
        assert got.shape == want.shape and bool(torch.isfinite(got).all()), (name, task)
        if name in NOT_IDENTITY:
            continue
        sd, expected = net.state_dict(), own.state_dict()
        base = state_of(Path(copies["ref"].split("@", 1)[1]))
        for k, v in expected.items():
            if v.is_floating_point():
                torch.testing.assert_close(sd[k], v, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{name} {k}: {m}")
            else:  # integer buffers (batch-norm counters) are not merged: the base's, by design
                assert torch.equal(sd[k], base[k]), (name, k)
        assert float((got - want).abs().max()) <= 1e-4, name


@pytest.mark.parametrize("name", MERGE_METHODS.list())
def test_the_recorded_options_and_recipe_repeat_the_merge(name, copies, merged, tmp_path):
    import yaml

    out, r = merged(name)
    opts = _options(name)
    saved = json.loads((out / "merge.json").read_text())
    assert saved["method"] == name and saved["options"] == r.options
    recipe = yaml.safe_load((out / "merge.yaml").read_text())
    assert recipe["method"] == name and opts.items() <= recipe["options"].items()
    assert MERGE_METHODS.get(name)(**recipe["options"]).options() == r.options  # the recipe's options rebuild it
    card = json.loads((out / "transferlab.json").read_text())
    assert card["merge"]["method"] == name
    again = run_recipe(resolve_recipe(out / "merge.yaml", out=tmp_path / "again"))
    assert again.options == r.options
    a, b = _tensors(out), _tensors(tmp_path / "again")
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), (name, k)


@pytest.mark.parametrize("name", MERGE_METHODS.list())
def test_an_unknown_option_is_refused_before_anything_is_written(name, copies, tmp_path):
    with pytest.raises(TransferlabError, match=rf"{name}: no option 'bogus_option'"):
        merge_models(name, copies["ref"], copies["dirs"], tmp_path / "never", data=copies["data"], bogus_option=1)
    assert not (tmp_path / "never").exists()
    with pytest.raises(TransferlabError, match=rf"{name}: .*'bogus_option'"):
        merge(name, copies["ref"], copies["dirs"], data=copies["data"], bogus_option=1)


def test_every_exception_names_a_registered_method():
    """The exceptions above stay honest: each is a registered method (a rename must move its reason with it)."""
    assert set(NOT_IDENTITY) | set(IDENTITY_OPTIONS) <= set(MERGE_METHODS.list())
    assert not set(NOT_IDENTITY) & set(IDENTITY_OPTIONS)
