"""A merge with data checks each merged head against its own fit on the same held-out examples and says when a
head is far below it (issue 29: "a merged text head far below its own fit" stayed silent); every merge writes a
report.html."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import make_text_dataset


def test_a_merged_text_head_far_below_its_fit_is_warned_and_an_identical_one_is_not(tiny_text_ref: str,
                                                                                       tmp_path: Path) -> None:
    from transferlab.fit import fit
    from transferlab.merge import merge_models
    from transferlab.models import evaluate

    train, test = make_text_dataset(30, seed=0), make_text_dataset(20, "test", seed=5)
    fit(train, tiny_text_ref, "finetune", out=tmp_path / "ft", epochs=4, lr=3e-3, max_length=32, seed=0)
    shutil.copytree(tmp_path / "ft", tmp_path / "ft_copy")
    own = evaluate(tmp_path / "ft", test)["accuracy"]
    assert own > 0.6  # the fit learned the task: the check below is about the merge

    same = merge_models("average", tiny_text_ref, [tmp_path / "ft", tmp_path / "ft_copy"], tmp_path / "same",
                        data=[test, test], names=["a", "b"])
    assert [c["task"] for c in same.checks] == ["a", "b"] and not same.warnings
    for c in same.checks:  # the average of one model twice is that model: the same accuracy, measured apart
        assert c["fit"] == own and abs(c["merged"] - own) < 1e-9 and c["examples"] == len(test)

    broken = merge_models("task_arithmetic", tiny_text_ref, [tmp_path / "ft", tmp_path / "ft_copy"],
                          tmp_path / "broken", data=[test, test], names=["a", "b"], lam=-4.0)
    merged = evaluate(tmp_path / "broken", test, head="a")["accuracy"]
    assert merged < own - 0.1  # the merge really lost the task ...
    assert len(broken.warnings) == 2 and all(("points below its own fit" in w or "below chance" in w)
                                             for w in broken.warnings)  # ... and says so
    saved = json.loads((tmp_path / "broken" / "merge.json").read_text())
    assert saved["warnings"] == broken.warnings and saved["checks"][0]["merged"] == merged
    html = (tmp_path / "broken" / "report.html").read_text()
    assert "beside its own fit" in html and broken.warnings[0].split(":")[0] in html and "class='note'" in html


def test_a_merge_without_data_writes_a_report_that_says_it_was_not_checked(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from transferlab.merge import merge_models

    paths = []
    for i in range(3):
        torch.manual_seed(i)
        p = tmp_path / f"m{i}.safetensors"
        save_file({"w": torch.randn(4, 3)}, str(p))
        paths.append(p)
    r = merge_models("average", paths[0], paths[1:], tmp_path / "out")
    assert r.checks == [] and r.warnings == []
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Not checked on data" in html and "average" in html
