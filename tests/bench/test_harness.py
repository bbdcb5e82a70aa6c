"""The bench harness (issue 27): a grid of jobs, a cache keyed by (bench, format, inputs), resume after a kill, and
progress that is never silent in a pipe (a line per finished job with its figure and an ETA; a heartbeat while a
long job runs)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from transferlab.bench._harness import Job, LocalBackend, backend_of, fmt, run_jobs
from transferlab.errors import TransferlabError

CALLS: list[int] = []


def square(x: int, pause: float = 0.0) -> dict[str, float]:
    CALLS.append(x)
    time.sleep(pause)
    if x < 0:
        raise TransferlabError(f"negative: {x}")
    return {"x": x, "y": float(x * x)}


def _jobs(xs, pause=0.0):
    return [Job(f"x={x}", square, {"x": x, "pause": pause}, key={"x": x}) for x in xs]


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()


def test_records_come_in_job_order_and_a_rerun_reads_the_cache(tmp_path):
    recs = run_jobs(_jobs([3, 1, 2]), bench="toy", version=1, cache=tmp_path)
    assert [r["y"] for r in recs] == [9.0, 1.0, 4.0] and CALLS == [3, 1, 2]
    assert len(list(tmp_path.glob("*.json"))) == 3
    CALLS.clear()
    assert run_jobs(_jobs([3, 1, 2, 4]), bench="toy", version=1, cache=tmp_path)[3]["y"] == 16.0
    assert CALLS == [4]  # only the new job ran
    CALLS.clear()
    run_jobs(_jobs([3]), bench="toy", version=2, cache=tmp_path)  # another format: its own records
    run_jobs(_jobs([3]), bench="other", version=1, cache=tmp_path)  # another bench: the same
    assert CALLS == [3, 3]


def test_a_damaged_record_runs_again(tmp_path):
    run_jobs(_jobs([5]), bench="toy", version=1, cache=tmp_path)
    (path,) = tmp_path.glob("*.json")
    path.write_text("{trunc")
    CALLS.clear()
    assert run_jobs(_jobs([5]), bench="toy", version=1, cache=tmp_path)[0]["y"] == 25.0 and CALLS == [5]
    assert json.loads(path.read_text())["y"] == 25.0


def test_a_killed_bench_resumes_with_the_runs_it_had_finished(tmp_path):
    def killed(x: int) -> dict[str, float]:
        if x == 2:
            raise KeyboardInterrupt
        return square(x)

    jobs = [Job(f"x={x}", killed, {"x": x}, key={"x": x}) for x in (1, 2, 3)]
    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs, bench="toy", version=1, cache=tmp_path)
    assert CALLS == [1] and len(list(tmp_path.glob("*.json"))) == 1
    CALLS.clear()
    assert [r["y"] for r in run_jobs(_jobs([1, 2, 3]), bench="toy", version=1, cache=tmp_path)] == [1.0, 4.0, 9.0]
    assert CALLS == [2, 3]


def test_a_failing_job_is_reported_the_others_finish_and_a_rerun_runs_only_the_failed(tmp_path, caplog):
    with pytest.raises(TransferlabError) as info:
        run_jobs(_jobs([1, -1, 2, -3]), bench="toy", version=1, cache=tmp_path)
    assert CALLS == [1, -1, 2, -3]  # the jobs after a failure ran
    assert str(info.value) == ("bench toy: 2 of 4 runs failed (the other 2 finished; they are cached: a rerun runs "
                               "only the failed ones):\n  x=-1: negative: -1\n  x=-3: negative: -3")
    assert isinstance(info.value.__cause__, TransferlabError)  # the first failure's traceback
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "bench toy: x=-1 failed: negative: -1", "bench toy: x=-3 failed: negative: -3"]  # as each one failed
    CALLS.clear()
    fixed = [Job(f"x={x}", square, {"x": abs(x)}, key={"x": x}) for x in (1, -1, 2, -3)]
    assert [r["y"] for r in run_jobs(fixed, bench="toy", version=1, cache=tmp_path)] == [1.0, 1.0, 4.0, 9.0]
    assert CALLS == [1, 3]


def broken(x: int) -> dict[str, float]:
    CALLS.append(x)
    return {"y": 1.0 / x}


def test_any_exception_of_a_job_is_reported_with_its_type(tmp_path):
    jobs = [Job(f"x={x}", broken, {"x": x}) for x in (0, 2)]
    with pytest.raises(TransferlabError, match=r"1 of 2 runs failed \(the other 1 finished\):\n  x=0: "
                                               r"ZeroDivisionError: float division by zero$"):
        run_jobs(jobs, bench="toy", version=1, cache=None)
    assert CALLS == [0, 2]


def test_ray_resources_are_refused_for_the_local_backend():
    with pytest.raises(TransferlabError, match="use them with --backend ray"):
        backend_of("local", gpus_per_run=1)
    assert backend_of("local", address="ray://elsewhere:10001").name == "local"  # $RAY_ADDRESS may stay set
    ray = backend_of("ray", "10.0.0.1:6379", cpus_per_run=2, gpus_per_run=0.5)
    assert (ray.address, ray.num_cpus, ray.num_gpus, ray.max_retries) == ("10.0.0.1:6379", 2, 0.5, 3)
    with pytest.raises(TransferlabError, match="more than 0 CPUs"):
        backend_of("ray", cpus_per_run=0)


def test_in_a_pipe_every_finished_job_prints_a_line_with_its_figure_and_an_eta(tmp_path, capsys):
    run_jobs(_jobs([1]), bench="toy", version=1, cache=tmp_path)
    capsys.readouterr()
    run_jobs(_jobs([1, 2, 3]), bench="toy", version=1, cache=tmp_path, progress=True,
             figure=lambda r: f"y {fmt(r['y'], 1)}")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "bench toy: 3 runs, 1 cached"
    assert re.fullmatch(r"bench toy 2/3: x=2: y 4\.0 \(0:\d\d elapsed, ETA 0:\d\d\)", lines[1]), lines[1]
    assert re.fullmatch(r"bench toy 3/3: x=3: y 9\.0 \(0:\d\d elapsed\)", lines[2]), lines[2]
    assert len(lines) == 3


def test_in_a_pipe_a_long_job_prints_a_heartbeat(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HEARTBEAT_SECONDS", "0.3")
    run_jobs(_jobs([7], pause=1.5), bench="toy", version=1, cache=None, progress=True, backend=LocalBackend())
    err = capsys.readouterr().err
    beats = [ln for ln in err.splitlines() if "running x=7" in ln]
    assert beats and re.fullmatch(r"bench toy 0/1: running x=7 \(0:0\d in this run\)", beats[0])
    assert err.strip().splitlines()[-1].startswith("bench toy 1/1: x=7")


def test_an_unknown_backend_is_refused():
    with pytest.raises(TransferlabError, match="unknown backend 'dask'; choose local or ray"):
        run_jobs(_jobs([1]), bench="toy", version=1, cache=None, backend="dask")
    assert CALLS == []


def test_a_job_key_defaults_to_its_arguments(tmp_path: Path):
    a, b = Job("a", square, {"x": 1}), Job("b", square, {"x": 1, "pause": 0.0})
    assert a.cache_name("toy", 1) != b.cache_name("toy", 1)  # every argument that could change the record
    assert a.cache_name("toy", 1) == Job("c", square, {"x": 1}).cache_name("toy", 1)  # the label is not one


def where(x: int) -> dict[str, object]:
    from transferlab._runtime import current_precision

    CALLS.append(x)
    return {"precision": current_precision()}


def test_a_device_or_precision_runs_each_job_in_that_runtime_under_its_own_key(tmp_path):
    jobs = [Job("x=1", where, {"x": 1})]
    assert run_jobs(jobs, bench="toy", version=1, cache=tmp_path)[0] == {"precision": "fp32"}
    assert run_jobs(jobs, bench="toy", version=1, cache=tmp_path, device="cpu", precision="bf16")[0] == {
        "precision": "bf16"}
    assert CALLS == [1, 1] and len(list(tmp_path.glob("*.json"))) == 2  # not the fp32 record
    assert run_jobs(jobs, bench="toy", version=1, cache=tmp_path)[0] == {"precision": "fp32"} and CALLS == [1, 1]
    with pytest.raises(TransferlabError, match="unknown device 'gpu'"):
        run_jobs(jobs, bench="toy", version=1, cache=None, device="gpu")


@pytest.mark.parametrize("bench", ["distill", "domain", "continual", "prune"])
def test_an_empty_seed_list_is_refused_before_any_work(bench, tmp_path, capsys):
    """`bench distill --seeds ''` started work (issue 29)."""
    from transferlab.cli import main

    assert main(["bench", bench, "--seeds", "", "--out", str(tmp_path / "b")]) == 2
    assert "at least one seed" in capsys.readouterr().err and not (tmp_path / "b" / "runs").exists()
