"""``bench distill`` on tiny models: every row against the labels-only student, the label-share split, the
``*_trained`` rows starting from the labels-only student, and resume from the cache."""

from __future__ import annotations

import json

import pytest

from transferlab.bench import bench_distill
from transferlab.errors import TransferlabError


def test_bench_distill_tiny(tmp_path, tiny_model_ref, monkeypatch):
    kw = dict(out=tmp_path / "b", targets=["builtin:shapes"], teachers=[tiny_model_ref, "builtin:small_resnet_shapes"],
              students=[tiny_model_ref], seeds=[0], label_shares=[0.5], epochs=1, limit=36, test_limit=12,
              image_size=16, batch_size=8)
    r = bench_distill(**kw)
    rows = [x["row"] for x in r.table()]
    assert rows[0] == "labels_only" and len(rows) == 8
    assert {"multi_avg", "multi_weighted"} <= set(rows) and sum(x.startswith("kd[") for x in rows) == 2
    weak = [x for x in rows if x.startswith("kl_dp_trained[")][0][len("kl_dp_trained["):-1]
    strong = [x for x in rows if x.startswith("feature[")][0][len("feature["):-1]
    assert f"kd_trained[{weak}]" in rows and {weak, strong} == {"timm:test_efficientnet", "small_resnet_shapes"}
    base = next(x for x in r.runs if x["row"] == "labels_only")
    for run in r.runs:
        if run["row"].startswith(("kd_trained", "kl_dp_trained")):  # they start from the labels-only student
            assert run["start_test_accuracy"] == pytest.approx(base["test_accuracy"])
        if run["row"] != "labels_only":
            assert run["n_labelled"] == 18 and run["n_unlabelled"] == 18  # half the 36 labels kept, half unlabelled
    table = {x["row"]: x for x in r.table()}
    some = table["multi_avg"]
    assert some["delta_vs_labels_only"] == pytest.approx(some["accuracy_mean"] - base["test_accuracy"])
    paths = r.save(tmp_path / "b")
    saved = json.loads(paths["json"].read_text())
    assert len(saved["teacher_runs"]) == 2 and "Δ vs labels only" in paths["html"].read_text()

    import transferlab.distill as distill_pkg
    import transferlab.fit as fit_pkg

    def boom(*a, **k):
        raise AssertionError("a cached run was recomputed")

    monkeypatch.setattr(distill_pkg, "distill", boom)
    monkeypatch.setattr(fit_pkg, "fit", boom)
    again = bench_distill(**kw)
    assert again.runs == r.runs


def test_bench_distill_refuses_one_teacher(tmp_path):
    with pytest.raises(TransferlabError, match="at least two teachers"):
        bench_distill(out=tmp_path, teachers=["builtin:efficientnet_lite0"])


def test_bench_distill_refuses_options_for_what_no_row_runs(tmp_path):
    # a typo in --option's method name was accepted and its options silently not used
    with pytest.raises(TransferlabError, match=r"unknown bench distill row\(s\) \['--option dsit'\]"):
        bench_distill(out=tmp_path / "b", method_options={"dsit": {"temperature": 4.0}, "dist": {"beta": 2.0}})
    assert not (tmp_path / "b").exists()


def test_bench_distill_runs_only_the_rows_asked_for(tmp_path, tiny_model_ref):
    r = bench_distill(out=tmp_path / "b", targets=["builtin:shapes"],
                      teachers=[tiny_model_ref, "builtin:small_resnet_shapes"], students=[tiny_model_ref], seeds=[0],
                      label_shares=[0.5], epochs=1, limit=36, test_limit=12, image_size=16, batch_size=8,
                      rows=["kd", "kl_dp_trained"])
    rows = [x["row"] for x in r.table()]
    assert rows[0] == "labels_only" and len(rows) == 4  # labels_only, kd from each teacher, kl_dp_trained
    assert sum(x.startswith("kd[") for x in rows) == 2 and rows[-1].startswith("kl_dp_trained[")
    with pytest.raises(TransferlabError, match="unknown bench distill row.*'kd_twice'"):
        bench_distill(out=tmp_path / "c", teachers=["builtin:shapes", "builtin:small_resnet_shapes"],
                      rows=["kd_twice"])


def test_bench_distill_cache_keys_are_pinned(tmp_path, monkeypatch):
    """The run cache is keyed by inputs: a refactor must not change a job's cache name nor the model folders the
    teachers and labels-only students are saved in (a rerun would recompute every run), nor what a job is given
    (the digest was taken before the private helpers' arguments were grouped). No run executes here:
    ``run_jobs`` is replaced by a stand-in that records each job and returns a plausible record."""
    import hashlib

    from transferlab.bench import _distill

    seen = []

    def fake_run_jobs(jobs, *, bench, version, **_):
        out = []
        for j in jobs:
            seen.append((bench, j.label, j.cache_name(bench, version), list(j.needs), sorted(j.kwargs.items())))
            a = j.kwargs
            rec = {"target": a["target"], "label_share": a["share"], "dir": f"/m/{j.label}",
                   "val_accuracy": 0.5 if a.get("ref") == "builtin:b" else 0.9}
            if "student" in a:
                rec.update(student=a["student"], seed=a["seed"])
            out.append(rec)
        return out

    monkeypatch.setattr(_distill, "run_jobs", fake_run_jobs)
    monkeypatch.chdir(tmp_path)  # a relative out: the teachers' and students' keys hold it
    _distill.bench_distill(out="b", targets=["builtin:shapes"], teachers=["builtin:a", "builtin:b"],
                           students=["builtin:s"], seeds=[0, 1], label_shares=[1.0, 0.2], epochs=2,
                           teacher_epochs=3, limit=40, test_limit=20, image_size=16, teacher_image_size=24,
                           batch_size=8, method_options={"kd": {"temperature": 2.0}}, rows=list(_distill.ROWS))
    assert len(seen) == 4 + 4 + 2 * 2 * 10  # teachers, labels-only students, 10 rows per (setting, seed)
    # re-pinned for issue 33: run format 2 (last-epoch accuracy), the dist and kd_zscore rows, and teachers fitted
    # without multi_weighted's 10 % hold-out when that row runs (their folder key says holdout); then the dist rows'
    # options (DIST_OPTIONS: the reference's CIFAR recipe; with DIST_OPTIONS = {} the digest was 558c6829...)
    digest = hashlib.sha256(repr(seen).encode()).hexdigest()
    assert digest == "b7a6593e0bc4e6363cd7ad8f948663be2f0449f913726d1cb18fbdfa5affa900", seen[:3]
    dist_opts = [dict(kw)["options"] for _, label, _, _, kw in seen if "dist[" in label]
    zscore_opts = [dict(kw)["options"] for _, label, _, _, kw in seen if "kd_zscore[" in label]
    assert dist_opts and all(o == {"temperature": 4.0, "dist_weight": 2.0} for o in dist_opts)
    # kd_zscore: kd's own options under the zscore recipe (which sets its temperature)
    assert all(o == {"temperature": 2.0, "zscore": True, "kd_weight": 0.989} for o in zscore_opts)


def test_a_teacher_or_student_of_another_device_or_precision_has_its_own_folder(tmp_path, monkeypatch):
    """A teacher's (or labels-only student's) cached record is keyed by the device and precision asked for, its model
    folder was not: a bench on another device refitted into the same folder, and a later row of the first bench
    distilled from that model (H8's review, item 1's pattern). Without them the folders keep their names (the pinned
    test above)."""
    from pathlib import Path

    from transferlab.bench import _distill

    needs, made = {}, []

    def fake_run_jobs(jobs, *, bench, **kw):
        if bench == "distill":
            raise RuntimeError("stop")
        needs.setdefault((kw.get("device"), kw.get("precision")), []).extend(j.needs for j in jobs)
        made.extend(jobs)
        return [{"target": j.kwargs["target"], "label_share": j.kwargs["share"], "dir": "/m", "val_accuracy": 0.5,
                 "student": j.kwargs.get("student"), "seed": j.kwargs.get("seed")} for j in jobs]

    monkeypatch.setattr(_distill, "run_jobs", fake_run_jobs)
    for device, precision in ((None, None), ("cpu", None), (None, "bf16")):
        with pytest.raises(RuntimeError, match="stop"):
            _distill.bench_distill(out=tmp_path, targets=["builtin:shapes"], teachers=["builtin:a", "builtin:b"],
                                   students=["builtin:s"], seeds=[0], label_shares=[1.0], device=device,
                                   precision=precision)
    plain, cpu, bf16 = (set(v) for v in needs.values())
    assert len(plain) == 3 and not plain & cpu and not plain & bf16 and not cpu & bf16  # 2 teachers, 1 student
    # and each job fits into the folder its needs name
    monkeypatch.setattr(_distill, "_samples", lambda *a: (None, None, None))
    monkeypatch.setattr(_distill, "_fitted", lambda d, *a, **k: {"dir": str(d)})
    monkeypatch.setattr(_distill, "_heldout", lambda labelled: (labelled, None))
    for j in made:
        assert str(Path(j.fn(**j.kwargs)["dir"]) / "model.safetensors") == j.needs[0]
