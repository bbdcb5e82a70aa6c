"""bench merge on a tiny model and two tiny image tasks: every number in the table traces back to a model on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import write_image_folder

from transferlab.errors import TransferlabError


def test_bench_merge_table_is_what_the_models_measure(tiny_model_ref: str, tmp_path: Path) -> None:
    from transferlab.bench import bench_merge
    from transferlab.models import evaluate as evaluate_model

    a = str(write_image_folder(tmp_path / "a", n_per_class=8))
    b = str(write_image_folder(tmp_path / "b", n_per_class=8, classes=("p", "q")))
    out = tmp_path / "bench"
    r = bench_merge(tiny_model_ref, [a, b], out=out, methods="average,ties", epochs=2, image_size=32)
    paths = r.save(out)
    names = r.names
    assert set(r.merged) == {"base_with_heads", "average", "ties"}
    # each merged accuracy is the merged network with that task's head, on that task's test split
    for n, target in zip(names, [a, b], strict=True):
        assert r.merged["ties"][n] == evaluate_model(r.options["merge_dirs"]["ties"], target, head=n)["accuracy"]
        assert r.individual[n] == evaluate_model(r.options["fit_dirs"][n], target)["accuracy"]
    rows = {row["method"]: row for row in json.loads(paths["json"].read_text())["rows"]}
    want = sum(r.merged["average"][n] / r.individual[n] for n in names) / 2
    assert rows["average"]["normalized"] == pytest.approx(want)
    assert rows["individual"]["normalized"] == 1.0
    assert "published ViT-B/32" in paths["html"].read_text()
    # the fits are cached: a second run reuses them (same training time recorded)
    again = bench_merge(tiny_model_ref, [a, b], out=out, methods="average", epochs=2, image_size=32)
    assert again.seconds[f"fit:{names[0]}"] == r.seconds[f"fit:{names[0]}"]
    assert again.merged["average"] == r.merged["average"]


def test_bench_merge_needs_two_targets(tiny_model_ref: str, tmp_path: Path) -> None:
    from transferlab.bench import bench_merge

    with pytest.raises(TransferlabError, match="at least two targets"):
        bench_merge(tiny_model_ref, "builtin:digits", out=tmp_path)
    with pytest.raises(TransferlabError, match="unknown merge method 'tie'"):
        bench_merge(tiny_model_ref, "builtin:digits,builtin:shapes", out=tmp_path, methods="tie")


def test_bench_merge_tunes_lam_on_held_out_training_examples(tiny_model_ref: str, tmp_path: Path) -> None:
    import numpy as np

    from transferlab.bench import bench_merge
    from transferlab.bench._merge import LAM_GRID
    from transferlab.data import load_dataset, split_validation
    from transferlab.merge import merge_models
    from transferlab.models import evaluate as evaluate_model

    a = str(write_image_folder(tmp_path / "a", n_per_class=8))
    b = str(write_image_folder(tmp_path / "b", n_per_class=8, classes=("p", "q")))
    out = tmp_path / "bench"
    r = bench_merge(tiny_model_ref, [a, b], out=out, methods="task_arithmetic", epochs=1, image_size=32, tune=True)
    lam = r.options["tuned_lam"]["task_arithmetic"]
    vals = [split_validation(load_dataset(t, "train"), 0.1, 0)[1] for t in (a, b)]
    scores = []
    for g in LAM_GRID:  # recompute the selection: the first lam with the best mean validation accuracy
        merge_models("task_arithmetic", tiny_model_ref, [r.options["fit_dirs"][n] for n in r.names], tmp_path / "m",
                     names=r.names, overwrite=True, lam=g)
        scores.append(np.mean([evaluate_model(tmp_path / "m", v, head=n)["accuracy"]
                               for n, v in zip(r.names, vals, strict=True)]))
    assert lam == LAM_GRID[int(np.argmax(scores))]
    assert set(r.merged) == {"base_with_heads", "task_arithmetic", "task_arithmetic+tuned"}


def test_fits_at_chance_are_said_beside_the_normalised_accuracies():
    """bench merge over fits at chance printed "normalised 1.24" with no word (issue 29)."""
    from transferlab.bench import MergeBenchResult
    from transferlab.report import render_markdown, tables_of

    r = MergeBenchResult("m", ["a", "b"], ["a", "b"], {"a": 0.11, "b": 0.9}, {"average": {"a": 0.14, "b": 0.8}},
                         {}, options={"chance": {"a": 0.1, "b": 0.1}})
    (w,) = r.warnings()
    assert w.startswith("the individual fit of a is at chance (0.110, chance 0.100)")
    d = r.to_dict()
    assert d["warnings"] == [w] and w in render_markdown(tables_of(d)[0])
    assert MergeBenchResult("m", ["a"], ["a"], {"a": 0.9}, {}, {}, options={"chance": {"a": 0.1}}).warnings() == []



def test_bench_merge_passes_fit_options_to_every_fit(tiny_model_ref: str, tiny_timm_weights: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit_options`` reach the fit: at lr 1e-12 (head at 1e11 x that) the backbone's weights stay the base's to
    float precision (each Adam step moves a weight by at most ~lr), and the fit's card records both options; and
    bench_merge hands them to every fit job."""
    import numpy as np
    from safetensors.numpy import load_file

    from transferlab.bench import _merge, bench_merge

    a = str(write_image_folder(tmp_path / "a", n_per_class=4))
    opts = {"lr": 1e-12, "head_lr_scale": 1e11}
    _merge.merge_fit_run(a, tiny_model_ref, "finetune", str(tmp_path / "fit"), 1, 32, 0, None, None, opts)
    card = json.loads((tmp_path / "fit" / "transferlab.json").read_text())
    assert card["train"]["lr"] == 1e-12 and card["options"]["head_lr_scale"] == 1e11
    base, fitted = load_file(str(tiny_timm_weights)), load_file(str(tmp_path / "fit" / "model.safetensors"))
    convs = [k for k in fitted if k.endswith(("conv_stem.weight", "conv_pw.weight"))]
    assert convs
    for k in convs:
        np.testing.assert_allclose(fitted[k], base[k if k in base else k.split(".", 1)[-1]], atol=1e-9)

    seen = []

    def fake_fit(**kw: object) -> dict:
        seen.append(kw.get("fit_options"))
        raise RuntimeError("stop after the fit jobs")

    monkeypatch.setattr(_merge, "merge_fit_run", fake_fit)
    b = str(write_image_folder(tmp_path / "b", n_per_class=4, classes=("p", "q")))
    with pytest.raises(Exception, match="stop after the fit jobs"):
        bench_merge(tiny_model_ref, [a, b], out=tmp_path / "bench", methods="average", fit_options=opts)
    assert seen and all(o == opts for o in seen)


@pytest.mark.parametrize(("fit_options", "message"), [
    ({"epochs": 2}, "epochs: bench merge sets these for every fit itself"),  # was a TypeError in every fit job
    ({"lrr": 1e-4}, "did you mean 'lr', an argument of fit"),  # was found only inside each fit job
    (None, "--option for tis: no such merge method"),  # method_options below: accepted and silently unused before
])
def test_bench_merge_refuses_bad_options_before_any_fit(fit_options: dict | None, message: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from transferlab.bench import _merge, bench_merge

    def no_fit(**kw: object) -> dict:
        raise AssertionError("a fit job ran")

    monkeypatch.setattr(_merge, "merge_fit_run", no_fit)
    a = str(write_image_folder(tmp_path / "a", n_per_class=2))
    b = str(write_image_folder(tmp_path / "b", n_per_class=2, classes=("p", "q")))
    with pytest.raises(TransferlabError, match=message):
        bench_merge("builtin:small_resnet_shapes", [a, b], out=tmp_path / "bench", methods="average",
                    fit_options=fit_options, method_options={"tis": {"density": 0.1}} if fit_options is None else None)
    assert not (tmp_path / "bench").exists()


def test_bench_merge_never_merges_the_fits_of_other_settings(tiny_model_ref: str, tmp_path: Path) -> None:
    """Run A, run B (another fit lr) in the same --out, run A again with a new merge method: A's merge is of A's
    fits. Each task's fits lived in one folder, out/fits/<task>: B's fits replaced A's there, and A's cached fit
    records plus B's model files counted as A's fits (H8's review; /tmp/h8/clash.py)."""
    import shutil

    import numpy as np
    from safetensors.numpy import load_file

    from transferlab.bench import bench_merge
    from transferlab.merge import merge_models

    a = str(write_image_folder(tmp_path / "a", n_per_class=4))
    b = str(write_image_folder(tmp_path / "b", n_per_class=4, classes=("p", "q")))
    out, kw = tmp_path / "bench", {"epochs": 1, "image_size": 32}
    first = bench_merge(tiny_model_ref, [a, b], out=out, methods="average", **kw)
    fits_a = {p.name: shutil.copytree(p, tmp_path / "fits_a" / p.name) for p in (out / "fits").iterdir()}
    assert len(fits_a) == 2
    bench_merge(tiny_model_ref, [a, b], out=out, methods="average", fit_options={"lr": 1e-12}, **kw)
    again = bench_merge(tiny_model_ref, [a, b], out=out, methods="task_arithmetic", **kw)
    assert again.individual == first.individual
    by_hand = [fits_a[d] for n in again.names for d in fits_a if d.split("-")[0] == n]
    merge_models("task_arithmetic", tiny_model_ref, by_hand, tmp_path / "m", names=again.names)
    want = load_file(str(tmp_path / "m" / "model.safetensors"))
    got = load_file(str(Path(again.options["merge_dirs"]["task_arithmetic"]) / "model.safetensors"))
    assert sorted(p.name.split("-")[0] for p in (out / "merged").iterdir()).count("average") == 2  # A's and B's
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
