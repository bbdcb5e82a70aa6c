"""``bench distill`` declares a ``dkd`` row family: asked for by name (``rows=["dkd"]``, ``--rows dkd``), it
distils a fresh student from the strongest teacher; the default families stay the published tables'."""

from __future__ import annotations

import pytest

from transferlab.bench import bench_distill
from transferlab.bench._distill import DEFAULT_ROWS, ROWS


def test_bench_distill_makes_a_dkd_row_when_asked(tmp_path, tiny_model_ref):
    assert "dkd" in ROWS and "dkd" not in DEFAULT_ROWS
    r = bench_distill(out=tmp_path / "b", targets=["builtin:shapes"],
                      teachers=[tiny_model_ref, "builtin:small_resnet_shapes"], students=[tiny_model_ref], seeds=[0],
                      label_shares=[0.5], epochs=1, limit=36, test_limit=12, image_size=16, batch_size=8,
                      rows=["dkd"], method_options={"dkd": {"warmup_epochs": 0.5}})
    rows = [x["row"] for x in r.table()]
    assert rows[0] == "labels_only" and len(rows) == 2 and rows[1].startswith("dkd[")
    strong = max(r.teacher_runs, key=lambda t: (t["val_accuracy"] or 0.0))["teacher"].removeprefix("builtin:")
    assert rows[1] == f"dkd[{strong.split('@', 1)[0]}]"  # from the strongest teacher
    run = next(x for x in r.runs if x["row"].startswith("dkd["))
    assert run["method"] == "dkd" and run["n_unlabelled"] == 18 and 0 <= run["test_accuracy"] <= 1
    assert r.options["rows"] == ["dkd"] and r.options["method_options"] == {"dkd": {"warmup_epochs": 0.5}}
    dkd_row = r.table()[1]
    assert dkd_row["delta_vs_labels_only"] == pytest.approx(dkd_row["accuracy_mean"] - r.table()[0]["accuracy_mean"])
