"""rank over a zoo on a backend (issue 28): one job per model (rank._model_run.score_model_run: plain arguments, the
scores back) gives the scores of the in-process path, a failed model is named after the others ran, a backend name
rank cannot build is refused with what to pass instead. The Ray backend itself: tests/bench/test_ray.py."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.bench import LocalBackend
from transferlab.data import load_dataset
from transferlab.errors import TransferlabError
from transferlab.rank import rank


class Inline(LocalBackend):
    """The harness's local backend under another name: rank takes its job path (what Ray would run), in-process."""

    name = "inline"

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def run(self, jobs, started, finished, failed):  # noqa: ANN001
        self.jobs += [j.label for j in jobs]
        super().run(jobs, started, finished, failed)


def _comparable(result):  # noqa: ANN001
    d = result.to_dict()
    d.pop("timings")
    d.pop("timing_summary")
    d["cache"].pop("cold")  # timings too (the state and the counts stay comparable)
    d["options"].pop("cache_dir")
    for m in d["models"]:
        m.pop("timings")
    return d


def test_one_job_per_model_gives_the_in_process_scores(tiny_model_ref, tmp_path):
    digits = load_dataset("builtin:digits")
    kw = dict(metrics="logme,knn,leep,nce", limit=60, image_size=32, ensemble=2)
    here = rank(digits, [tiny_model_ref, "builtin:pixels"], cache_dir=tmp_path / "a", **kw)
    inline = Inline()
    jobs = rank(digits, [tiny_model_ref, "builtin:pixels"], cache_dir=tmp_path / "b", backend=inline, **kw)
    assert inline.jobs == [tiny_model_ref, "builtin:pixels"]  # one job per model, in the zoo's order
    assert not any(m.timings["cache_hit"] for m in jobs.models)  # computed by the jobs, into their own cache
    np.testing.assert_equal(_comparable(jobs), _comparable(here))
    again = rank(digits, [tiny_model_ref, "builtin:pixels"], cache_dir=tmp_path / "b", backend=Inline(), **kw)
    assert all(m.timings["cache_hit"] for m in again.models)  # the jobs' feature cache serves a rerun
    assert [(m.model, m.scores, m.consensus_rank) for m in again.models] == [
        (m.model, m.scores, m.consensus_rank) for m in here.models]


def test_a_failed_model_is_named_after_the_others_ran(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(TransferlabError, match=r"^rank: 1 of 2 models failed \(the others' features and scores are "
                                               r"cached: a rerun computes only the failed ones\):\n  .*broken"):
        rank("builtin:digits", [f"timm:test_efficientnet@{broken}", "builtin:pixels"], metrics="knn", limit=30,
             cache_dir=tmp_path / "c", backend=Inline())
    assert list((tmp_path / "c" / "features").iterdir())  # pixels ran after the broken model failed


def test_a_backend_rank_cannot_build_is_refused_before_any_work():
    with pytest.raises(TransferlabError, match=r"backend_of\('ray', address\)"):
        rank("builtin:digits", ["builtin:pixels"], backend="ray")
    with pytest.raises(TransferlabError, match="a backend with a run\\(\\) method"):
        rank("builtin:digits", ["builtin:pixels"], backend=3)
