"""mergekit YAML in ``transferlab merge --config``: real mergekit configurations (as mergekit documents them, each
citing its source; the models replaced by local files) translate to transferlab's own recipe, merge to the same
tensors as that recipe written by hand (and to mergekit's formula where it is simple), print one note per mapping,
and what has no equivalent is refused by its key. The ``linear`` method (per-model weights) is checked numerically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from transferlab.errors import TransferlabError
from transferlab.merge import load_recipe, merge, resolve_recipe, run_recipe

KEYS = ("enc.weight", "enc.bias", "out.weight")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """A base and three fine-tunes of it as safetensors files (what mergekit users merge: plain weight files)."""
    root = tmp_path_factory.mktemp("mergekit")
    g = torch.Generator().manual_seed(0)
    base = {"enc.weight": torch.randn(8, 6, generator=g), "enc.bias": torch.randn(8, generator=g),
            "out.weight": torch.randn(4, 8, generator=g)}
    save_file(base, str(root / "base.safetensors"))
    for i in range(3):
        save_file({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()},
                  str(root / f"m{i}.safetensors"))
    return root


def _state(root: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(root / f"{name}.safetensors"))


def _run(root: Path, text: str, name: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    cfg = root / f"{name}.yml"
    cfg.write_text(text)
    recipe = resolve_recipe(cfg, out=root / f"out-{name}")
    run_recipe(recipe, overwrite=True)
    return load_file(str(root / f"out-{name}" / "model.safetensors")), recipe.notes


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


# mergekit examples/linear.yml (arcee-ai/mergekit @ bc62b54), models replaced by local files
LINEAR = """\
models:
  - model: m0.safetensors
    parameters:
      weight: 1.0
  - model: m1.safetensors
    parameters:
      weight: 0.3
  - model: m2.safetensors
    parameters:
      weight: 0.5
merge_method: linear
dtype: float16
"""


def test_linear_example_is_the_weighted_average_and_our_own_linear_recipe(zoo):
    got, notes = _run(zoo, LINEAR, "linear")
    ms, w = [_state(zoo, f"m{i}") for i in range(3)], [1.0, 0.3, 0.5]
    for k in KEYS:  # mergekit's LinearMergeTask: sum_t w_t theta_t / sum_t w_t
        ref = sum(wi * m[k].double() for wi, m in zip(w, ms, strict=True)) / sum(w)
        torch.testing.assert_close(got[k].double(), ref, rtol=0, atol=1e-6)
    own, _ = _run(zoo, "method: linear\nbase: m0.safetensors\nmodels:\n  - {path: m0.safetensors, weight: 1.0}\n"
                       "  - {path: m1.safetensors, weight: 0.3}\n  - {path: m2.safetensors, weight: 0.5}\n",
                  "linear-own")
    _assert_same(got, own)
    assert "merge_method: linear, models[].parameters.weight [1.0, 0.3, 0.5] -> method: linear, models[].weight " \
           "(the weighted average sum_t w_t theta_t / sum_t w_t)" in notes
    assert "dtype: float16 -> not applied: the output keeps the models' dtype" in notes
    assert any(n.startswith("base_model: (none) -> base: m0.safetensors") for n in notes)


def test_linear_with_equal_weights_is_average(zoo):
    text = LINEAR.replace("0.3", "1.0").replace("0.5", "1.0")
    got, notes = _run(zoo, text, "linear-equal")
    own, _ = _run(zoo, "method: average\nbase: m0.safetensors\nmodels: [m0.safetensors, m1.safetensors, "
                       "m2.safetensors]\n", "average-own")
    _assert_same(got, own)
    assert "merge_method: linear, weight 1 on every model -> method: average (the mean)" in notes


# mergekit README, "ties" (arcee-ai/mergekit README.md, Merge Methods example), the density gradient replaced by one
# value and the filtered weight by one number; the base model listed among the models as mergekit users often do
TIES = """\
models:
  - model: base.safetensors
    # no parameters necessary for base model
  - model: m0.safetensors
    parameters:
      density: 0.5
      weight: 0.5
  - model: m1.safetensors
    parameters:
      density: 0.5
      weight: 0.5
merge_method: ties
base_model: base.safetensors
parameters:
  normalize: true
  int8_mask: true
dtype: float16
"""


def test_ties_example_equals_our_ties_per_tensor(zoo):
    got, notes = _run(zoo, TIES, "ties")
    own, _ = _run(zoo, "method: ties\nbase: base.safetensors\nmodels: [m0.safetensors, m1.safetensors]\n"
                       "options: {density: 0.5, lam: 1.0, scope: tensor}\n", "ties-own")
    _assert_same(got, own)
    model_scope, _ = _run(zoo, "method: ties\nbase: base.safetensors\nmodels: [m0.safetensors, m1.safetensors]\n"
                               "options: {density: 0.5, scope: model}\n", "ties-model")
    assert any(not torch.equal(got[k], model_scope[k]) for k in KEYS)  # the scope matters: the test can fail
    assert "models[0].model: base.safetensors is the base_model -> left out of models (its task vector is zero; " \
           "mergekit skips it too)" in notes
    assert "models[].parameters.density: 0.5 -> options.density: 0.5" in notes
    assert "parameters.int8_mask: True -> ignored (mergekit's memory option; no effect on the result)" in notes
    assert any(n.startswith("merge_method: ties -> method: ties, scope: tensor") for n in notes)


# mergekit docs/merge_methods.md, Task Arithmetic (weight per model, lambda global)
TASK_ARITHMETIC = """\
merge_method: task_arithmetic
base_model: base.safetensors
models:
  - model: m0.safetensors
    parameters:
      weight: {w0}
  - model: m1.safetensors
    parameters:
      weight: {w1}
parameters:
  lambda: 0.8
"""


def test_task_arithmetic_weights_become_lam_or_linear(zoo):
    got, notes = _run(zoo, TASK_ARITHMETIC.format(w0=0.5, w1=0.5), "ta")
    own, _ = _run(zoo, "method: task_arithmetic\nbase: base.safetensors\nmodels: [m0.safetensors, m1.safetensors]\n"
                       "options: {lam: 0.4}\n", "ta-own")
    _assert_same(got, own)
    assert "merge_method: task_arithmetic, weight 0.5 on every model -> method: task_arithmetic, lam: 0.4 " \
           "(lambda 0.8 x weight 0.5)" in notes
    got, notes = _run(zoo, TASK_ARITHMETIC.format(w0=0.7, w1=0.2), "ta-weighted")
    b, m0, m1 = (_state(zoo, n) for n in ("base", "m0", "m1"))
    for k in KEYS:  # mergekit's GTATask, normalize false: base + lambda * sum_t w_t tau_t
        ref = b[k].double() + 0.8 * (0.7 * (m0[k].double() - b[k]) + 0.2 * (m1[k].double() - b[k]))
        torch.testing.assert_close(got[k].double(), ref, rtol=0, atol=1e-6)
    assert any(n.startswith("merge_method: task_arithmetic, models[].parameters.weight [0.7, 0.2] -> method: linear")
               for n in notes)


# mergekit docs/merge_methods.md, DARE (dare_ties / dare_linear: weight and density per model)
DARE = """\
merge_method: {method}
base_model: base.safetensors
models:
  - model: m0.safetensors
    parameters: {{weight: 1.0, density: 0.6}}
  - model: m1.safetensors
    parameters: {{weight: 1.0, density: 0.6}}
parameters:
  normalize: {normalize}
"""


@pytest.mark.parametrize(("method", "normalize", "own"), [
    ("dare_linear", "false", "{p: 0.4, lam: 1.0, ties: false, seed: 0}"),
    ("dare_linear", "true", "{p: 0.4, lam: 0.5, ties: false, seed: 0}"),
    ("dare_ties", "true", "{p: 0.4, lam: 1.0, ties: true, seed: 0}")])
def test_dare_equals_our_dare(zoo, method, normalize, own):
    got, notes = _run(zoo, DARE.format(method=method, normalize=normalize), f"{method}-{normalize}")
    mine, _ = _run(zoo, f"method: dare\nbase: base.safetensors\nmodels: [m0.safetensors, m1.safetensors]\n"
                        f"options: {own}\n", f"{method}-{normalize}-own")
    _assert_same(got, mine)
    assert any(n.startswith(f"merge_method: {method} -> method: dare") for n in notes)
    assert any(n.startswith("models[].parameters.density: 0.6 -> options.p: 0.4") for n in notes)


# mergekit examples/gradient-slerp.yml (arcee-ai/mergekit @ 4643a47), models replaced by local files
GRADIENT_SLERP = """\
slices:
  - sources:
      - model: m0.safetensors
        layer_range: [0, 40]
      - model: m1.safetensors
        layer_range: [0, 40]
merge_method: slerp
base_model: m0.safetensors
parameters:
  t:
    - pattern: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - pattern: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: float16
"""


@pytest.mark.parametrize(("text", "key"), [
    (GRADIENT_SLERP, "mergekit merge_method: slerp"),
    (GRADIENT_SLERP.replace("merge_method: slerp", "merge_method: linear"), "mergekit slices"),
    (TIES.replace("density: 0.5\n      weight: 0.5\n  - model: m1",
                  "density: [1, 0.7, 0.1]\n      weight: 0.5\n  - model: m1"), "mergekit models[1].parameters.density"),
    (TIES.replace("weight: 0.5\nmerge", "weight: 0.3\nmerge"), "mergekit models[2].parameters.weight"),
    (TIES.replace("normalize: true", "normalize: false"), "mergekit parameters.normalize: false"),
    (DARE.format(method="dare_ties", normalize="false"), "mergekit parameters.normalize: false"),
    (DARE.format(method="dare_linear", normalize="false") + "  rescale: false\n", "mergekit parameters.rescale"),
    (LINEAR + "tokenizer_source: union\n", "mergekit tokenizer_source"),
    (LINEAR.replace("m2.safetensors", "garage-bAInd/Platypus2-13B"), "mergekit models[2].model"),
    (TIES.replace("normalize: true", "normalize: true\n  t: 0.5"), "mergekit parameters.t"),
    (LINEAR.replace("merge_method: linear", "merge_method: model_stock"), "mergekit merge_method: model_stock")])
def test_what_has_no_equivalent_is_refused_by_its_key(zoo, text, key):
    cfg = zoo / "refused.yml"
    cfg.write_text(text)
    with pytest.raises(TransferlabError, match="a mergekit configuration") as exc:
        load_recipe(cfg)
    assert key in str(exc.value)


def test_linear_method_weights_numerically():
    g = torch.Generator().manual_seed(1)
    base = {"w": torch.randn(5, 3, generator=g, dtype=torch.float64)}
    ms = [{"w": base["w"] + torch.randn(5, 3, generator=g, dtype=torch.float64)} for _ in range(3)]
    w = [2.0, -0.5, 1.0]
    got = merge("linear", base, ms, weights=w)["w"]
    torch.testing.assert_close(got, sum(wi * m["w"] for wi, m in zip(w, ms, strict=True)) / sum(w))
    got = merge("linear", base, ms, weights=w, normalize=False, lam=0.5)["w"]
    torch.testing.assert_close(got, base["w"] + 0.5 * sum(wi * (m["w"] - base["w"]) for wi, m in zip(w, ms,
                                                                                                      strict=True)))
    torch.testing.assert_close(merge("linear", base, ms)["w"], merge("average", base, ms)["w"])
    with pytest.raises(TransferlabError, match="2 weights for 3 models"):
        merge("linear", base, ms, weights=[1.0, 2.0])
    with pytest.raises(TransferlabError, match="sum to 0"):
        merge("linear", base, ms, weights=[1.0, -1.0, 0.0])


def test_cli_recipe_alias_prints_the_notes(zoo, capsys):
    from transferlab.cli import main

    (zoo / "cli.yml").write_text(LINEAR)
    assert main(["merge", "--recipe", str(zoo / "cli.yml"), "--out", str(zoo / "out-cli"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mergekit merge_method: linear, models[].parameters.weight [1.0, 0.3, 0.5] -> method: linear" in printed
    assert "mergekit dtype: float16 -> not applied" in printed
    _assert_same(load_file(str(zoo / "out-cli" / "model.safetensors")), _run(zoo, LINEAR, "cli-ref")[0])
