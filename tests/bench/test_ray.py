"""The Ray backend on a real two-node cluster (``ray.cluster_utils.Cluster``: a head and a second node of one CPU
each, started once for the module): a bench grid gives the local backend's rows; a worker killed in the middle of a
run is retried and the grid completes with the same rows; a run that raises is reported, the others finish and a
rerun runs only the failed one; an interrupted driver resumes from the run cache; ``rank`` over a zoo and bench rank
give the local scores (issue 28)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from transferlab.bench import _continual as continual_bench
from transferlab.bench import backend_of, bench_continual, bench_rank
from transferlab.bench._harness import Job, run_jobs
from transferlab.errors import TransferlabError
from transferlab.rank import rank

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a cluster's start-up: about 10 s on two cores, paid once for the module

TIMING = {"seconds", "peak_mb", "peak_growth_mb", "seconds_per_task", "task_seconds", "eval_seconds"}  # measured: they differ run to run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as mp:  # the nodes' workers inherit this environment
        mp.setenv("TRANSFERLAB_CACHE", str(tmp_path_factory.mktemp("worker-cache")))
        mp.setenv("OMP_NUM_THREADS", "1")
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def grid(tiny_timm_weights, tmp_path_factory):
    """A tiny bench continual (4 runs) and its rows on the local backend."""
    kw = dict(streams=["builtin:shapes,builtin:textures", "builtin:fashion-mnist:5"], strategies=["naive", "replay"],
              strategy_options={"replay": {"buffer_size": 8}}, epochs=1, limit=20, test_limit=20, image_size=16, batch_size=8)
    model = f"timm:test_efficientnet@{tiny_timm_weights}"
    local = bench_continual(model, out=tmp_path_factory.mktemp("local"), **kw)
    return model, kw, _rows(local.runs)


def _rows(runs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in runs]


def test_a_grid_on_two_nodes_gives_the_local_rows(cluster, grid, tmp_path):
    model, kw, local = grid
    r = bench_continual(model, out=tmp_path, backend="ray", **kw)
    assert len(local) == 4 and _rows(r.runs) == local  # bit-identical: the same floats, in the jobs' order
    assert len(list((tmp_path / "runs").glob("*.json"))) == 4


def _killed_once(marker: str):
    """continual_run, except that its first call anywhere kills its own worker process (SIGKILL: no clean-up, as
    the OOM killer or a lost node would) after creating ``marker``."""
    run = continual_bench.continual_run

    def continual_run(**kwargs):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # exactly one attempt dies
        except FileExistsError:
            return run(**kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    return continual_run


def test_a_killed_worker_is_retried_and_the_grid_completes(cluster, grid, tmp_path, monkeypatch):
    model, kw, local = grid
    marker = tmp_path / "killed"
    monkeypatch.setattr(continual_bench, "continual_run", _killed_once(str(marker)))
    r = bench_continual(model, out=tmp_path / "b", backend="ray", **kw)
    assert marker.exists()  # a worker did die in the middle of a run ...
    assert _rows(r.runs) == local  # ... and its run was run again


def test_a_failing_run_is_reported_the_others_finish_and_a_rerun_runs_only_it(cluster, tmp_path):
    def _maybe_fails(x: int, fail: bool) -> dict[str, float]:  # a closure: Ray ships it by value
        if fail:
            raise TransferlabError(f"no luck with {x}")
        return {"y": float(x * x), "pid": os.getpid()}

    jobs = [Job(f"x={x}", _maybe_fails, {"x": x, "fail": x == 2}, key={"x": x}) for x in range(4)]
    with pytest.raises(TransferlabError, match=r"bench toy: 1 of 4 runs failed \(the other 3 finished; they are "
                                               r"cached: a rerun runs only the failed ones\):\n  x=2: no luck with 2$"):
        run_jobs(jobs, bench="toy", version=1, cache=tmp_path, backend="ray")
    assert len(list(tmp_path.glob("*.json"))) == 3
    before = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    fixed = [Job(j.label, _maybe_fails, {"x": j.kwargs["x"], "fail": False}, key=j.key) for j in jobs]
    records = run_jobs(fixed, bench="toy", version=1, cache=tmp_path, backend="ray")
    assert [r["y"] for r in records] == [0.0, 1.0, 4.0, 9.0]
    assert all(p.read_text() == before[p.name] for p in tmp_path.glob("*.json") if p.name in before)  # not rerun


def test_an_interrupted_driver_resumes_from_the_run_cache(cluster, tmp_path):
    def slow_square(x: int) -> dict[str, float]:
        import time

        time.sleep(0.5 * x)
        return {"y": float(x * x)}

    jobs = [Job(f"x={x}", slow_square, {"x": x}) for x in range(4)]

    def interrupt(record):  # Ctrl-C on the driver as the second record comes back
        if len(list(tmp_path.glob("*.json"))) == 2:
            raise KeyboardInterrupt
        return ""

    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs, bench="toy", version=1, cache=tmp_path, backend="ray", figure=interrupt)
    assert len(list(tmp_path.glob("*.json"))) == 2  # the runs that had finished, cached as they came back
    done = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    assert [r["y"] for r in run_jobs(jobs, bench="toy", version=1, cache=tmp_path, backend="ray")] == [0, 1, 4, 9]
    assert all(p.stat().st_mtime_ns == done[p.name] for p in tmp_path.glob("*.json") if p.name in done)


def test_rank_over_a_zoo_on_ray_gives_the_local_scores(cluster, tiny_zoo, tmp_path):
    zoo, _ = tiny_zoo
    kw = dict(metrics="logme,knn,leep", limit=60, image_size=32, ensemble=2)
    local = rank("builtin:digits", zoo, cache_dir=tmp_path / "local", **kw)
    remote = rank("builtin:digits", zoo, cache_dir=tmp_path / "ray", backend=backend_of("ray"), **kw)
    assert not any(m.timings["cache_hit"] for m in remote.models)  # the workers extracted and scored
    assert list((tmp_path / "ray" / "features").iterdir())  # into the feature cache they were given
    a, b = local.to_dict(), remote.to_dict()
    for d in (a, b):
        d.pop("timings")
        d.pop("timing_summary")
        d["cache"].pop("cold")  # timings too; the cache's state and counts stay compared
        d["options"].pop("cache_dir")
        for m in d["models"]:
            m.pop("timings")
    np.testing.assert_equal(b, a)  # every score, rank, consensus and the ensemble: identical
    assert [m.model for m in remote.models] == [m.model for m in local.models]


def test_rank_on_ray_names_a_model_that_fails_after_the_others(cluster, tiny_zoo, tmp_path):
    zoo, refs = tiny_zoo
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(TransferlabError, match=r"rank: 1 of 2 models failed .*\n  .*broken\.safetensors"):
        rank("builtin:digits", [refs[2], f"timm:test_efficientnet@{broken}"], metrics="knn", limit=30,
             image_size=32, cache_dir=tmp_path / "c", backend=backend_of("ray"))
    assert list((tmp_path / "c" / "features").iterdir())  # the other model's features were cached


def test_bench_rank_on_ray_gives_the_local_results(cluster, tiny_zoo, tmp_path, monkeypatch):
    """Every model's rank and every ground-truth cell as Ray tasks (moved here from test_bench_rank.py: it shares the
    cluster instead of starting a Ray of its own)."""
    zoo, _ = tiny_zoo
    kw = dict(metrics="logme,knn", limit=80, image_size=32, n_boot=10)
    local = bench_rank(zoo, "builtin:digits", **kw)
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "fresh-cache"))  # nothing cached: the workers compute
    remote = bench_rank(zoo, "builtin:digits", backend="ray", **kw)
    assert remote.cost["ground_truth_cells_cached"] == 0
    assert remote.ground_truth == local.ground_truth
    assert remote.quality["logme"] == local.quality["logme"]
    np.testing.assert_equal(remote.to_dict()["metrics"], local.to_dict()["metrics"])



def _prune_sets(root):
    """Tiny colour folders: a 4-class source and a 2-class target outside it (as tests/bench/test_bench_prune.py)."""
    from PIL import Image

    colours = {"red": (210, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 210), "white": (230, 230, 230),
               "pink": (240, 60, 60), "orange": (240, 150, 30)}
    rng = np.random.default_rng(0)
    for name, classes in (("source", ["red", "green", "blue", "white"]), ("target", ["pink", "orange"])):
        for split, k in (("train", 8), ("test", 4)):
            for c in classes:
                d = root / name / split / c
                d.mkdir(parents=True, exist_ok=True)
                for i in range(k):
                    a = np.clip(np.array(colours[c])[None, None, :] + rng.integers(-20, 20, (12, 12, 3)), 0, 255)
                    Image.fromarray(a.astype(np.uint8)).save(d / f"{i:02d}.png")
    return str(root / "source"), str(root / "target")


def _bench_rows(kind, model, out, tmp, **backend):
    """One tiny bench of ``kind`` and the numbers it reports (timings aside)."""
    from transferlab.bench import bench_distill, bench_domain, bench_merge, bench_prune

    if kind == "domain":
        r = bench_domain(model, out=out, shifts=[("builtin:digits", "builtin:digits-m")], methods="source_only,mcc",
                         seeds=(0,), trade_offs=(1.0,), epochs=1, limit=60, test_limit=30, image_size=32,
                         batch_size=8, supervised=False, **backend)
        return _rows(r.runs)
    if kind == "merge":
        r = bench_merge(model, ["builtin:digits", "builtin:shapes"], out=out, methods="average", epochs=1, limit=40,
                        test_limit=20, image_size=32, **backend)
        return {"individual": r.individual, "merged": r.merged}
    if kind == "distill":
        r = bench_distill(out=out, targets=["builtin:shapes"], teachers=[model, "builtin:small_resnet_shapes"],
                          students=[model], seeds=[0], label_shares=[0.5], epochs=1, limit=36, test_limit=12,
                          image_size=16, batch_size=8, rows=["kd"], **backend)
        drop = TIMING | {"ms_per_image", "teacher_ms_per_image", "speedup"}
        return [{k: v for k, v in x.items() if k not in drop} for x in r.runs]
    source, target = _prune_sets(tmp)
    r = bench_prune(out=out, source=source, targets=[target], seeds=[0], pretrain_epochs=1, epochs=1, **backend)
    return [{k: v for k, v in x.items() if not k.endswith("seconds")} for x in r.runs]


@pytest.mark.parametrize("kind", ["domain", "merge", "distill", "prune"])
def test_every_bench_on_two_nodes_gives_the_local_numbers(kind, cluster, tiny_timm_weights, tmp_path):
    """Every bench runs on the Ray backend with the local backend's numbers (issue 28: "every bench and rank run with
    --backend ray against a 2-node local cluster in the tests")."""
    model = f"timm:test_efficientnet@{tiny_timm_weights}"
    local = _bench_rows(kind, model, tmp_path / "local", tmp_path / "data")
    on_ray = _bench_rows(kind, model, tmp_path / "ray", tmp_path / "data", backend="ray")
    assert local and on_ray == local
