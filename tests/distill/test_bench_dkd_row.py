"""``bench distill`` declares ``dkd``, ``dist`` and ``kd_zscore`` row families: asked for by name (``rows=["dkd",
...]``, ``--rows dkd,dist,kd_zscore``), each distils a fresh student from the strongest teacher; the default
families stay the published tables'. Every distillation row records the last epoch's test accuracy beside the
selected epoch's."""

from __future__ import annotations

import pytest

from transferlab.bench import bench_distill
from transferlab.bench._distill import DEFAULT_ROWS, ROWS, ZSCORE_OPTIONS


def test_bench_distill_makes_dkd_dist_and_zscore_rows_when_asked(tmp_path, tiny_model_ref):
    assert {"dkd", "dist", "kd_zscore"} <= set(ROWS) and not {"dkd", "dist", "kd_zscore"} & set(DEFAULT_ROWS)
    r = bench_distill(out=tmp_path / "b", targets=["builtin:shapes"],
                      teachers=[tiny_model_ref, "builtin:small_resnet_shapes"], students=[tiny_model_ref], seeds=[0],
                      label_shares=[0.5], epochs=1, limit=36, test_limit=12, image_size=16, batch_size=8,
                      rows=["dkd", "dist", "kd_zscore"], method_options={"dkd": {"warmup_epochs": 0.5}})
    rows = [x["row"] for x in r.table()]
    strong = max(r.teacher_runs, key=lambda t: (t["val_accuracy"] or 0.0))["teacher"].removeprefix("builtin:")
    strong = strong.split("@", 1)[0]
    assert rows == ["labels_only", f"dkd[{strong}]", f"dist[{strong}]", f"kd_zscore[{strong}]"]
    run = next(x for x in r.runs if x["row"].startswith("dkd["))
    assert run["method"] == "dkd" and run["n_unlabelled"] == 18 and 0 <= run["test_accuracy"] <= 1
    assert r.options["rows"] == ["dkd", "dist", "kd_zscore"]
    assert r.options["method_options"] == {"dkd": {"warmup_epochs": 0.5}}
    dkd_row = r.table()[1]
    assert dkd_row["delta_vs_labels_only"] == pytest.approx(dkd_row["accuracy_mean"] - r.table()[0]["accuracy_mean"])
    z = next(x for x in r.runs if x["row"].startswith("kd_zscore["))
    assert z["method"] == "kd" and ZSCORE_OPTIONS == {"zscore": True, "temperature": 2.0, "kd_weight": 0.989}
    for x in r.runs:
        if x["row"] != "labels_only":
            assert 0 <= x["last_epoch_test_accuracy"] <= 1 and x["selected_epoch"] in (None, 1)
            if x["selected_epoch"] in (None, 1):  # one epoch: the last is the one kept (None: no hold-out)
                assert x["last_epoch_test_accuracy"] == x["test_accuracy"]
