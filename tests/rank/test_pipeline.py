"""rank()'s local pipeline (rank._pipeline): a model's metrics run while the next model extracts, with the results,
order and errors of scoring the models one after the other."""

import functools
import threading

import numpy as np
import pytest

from transferlab.data import load_dataset
from transferlab.errors import ModelError, TransferlabError
from transferlab.rank import _api, _pipeline, rank

METRICS = "logme,hscore,leep,nce,knn"


@pytest.fixture
def digits():
    return load_dataset("builtin:digits").stratified_sample(120)


def _sequential(monkeypatch):
    monkeypatch.setattr(_api, "score_zoo_local", functools.partial(_pipeline.score_zoo_local, overlap=False))


def test_pipelined_scores_and_order_equal_the_sequential_ones(digits, tiny_model_ref, monkeypatch, tmp_path):
    zoo = [tiny_model_ref, "builtin:pixels", tiny_model_ref]  # three models: the stage holds two behind one
    piped = rank(digits, zoo, METRICS, image_size=32, use_cache=False)
    _sequential(monkeypatch)
    seq = rank(digits, zoo, METRICS, image_size=32, use_cache=False)
    assert [m.model for m in piped.models] == [m.model for m in seq.models]
    assert [m.consensus_rank for m in piped.models] == [m.consensus_rank for m in seq.models]
    for a, b in zip(piped.models, seq.models, strict=True):
        assert a.scores.keys() == b.scores.keys()
        for k, v in b.scores.items():
            assert (a.scores[k] is None) == (v is None)
            if v is not None:
                np.testing.assert_allclose(a.scores[k], v, rtol=1e-12, atol=0)


def test_metrics_run_in_a_worker_while_the_next_model_extracts(digits, tiny_model_ref, monkeypatch):
    second_extracting = threading.Event()
    where = []
    extract, score = _pipeline.extract_model, _pipeline.score_extracted

    def extract_model(setup, backbone, advance):
        if backbone.ref == "builtin:pixels":
            second_extracting.set()
        return extract(setup, backbone, advance)

    def score_extracted(setup, entry, backbone, got):
        where.append(threading.current_thread().name)
        if entry.ref == tiny_model_ref:  # sequential scoring would wait here in vain: pixels extracts after it
            where.append(second_extracting.wait(timeout=20))
        return score(setup, entry, backbone, got)

    monkeypatch.setattr(_pipeline, "extract_model", extract_model)
    monkeypatch.setattr(_pipeline, "score_extracted", score_extracted)
    r = rank(digits, [tiny_model_ref, "builtin:pixels"], "logme", image_size=32, use_cache=False)
    assert where[1] is True, "the first model's metrics did not overlap the second model's extraction"
    assert all(w.startswith("transferlab-rank-metrics") for w in where if isinstance(w, str))
    assert {m.model for m in r.models} == {tiny_model_ref, "builtin:pixels"}
    where.clear()
    second_extracting.clear()
    second_extracting.set()  # one thread (--threads 1): in sequence, in this thread
    rank(digits, [tiny_model_ref, "builtin:pixels"], "logme", image_size=32, use_cache=False, threads=1)
    assert [w for w in where if isinstance(w, str)] == [threading.current_thread().name] * 2


def test_a_metric_stage_error_surfaces_as_itself_before_a_later_extraction_error(digits, tiny_model_ref,
                                                                                   monkeypatch):
    err = TransferlabError("metric stage broke")
    extracted = []
    extract = _pipeline.extract_model

    def score_extracted(setup, entry, backbone, got):
        raise err

    def extract_model(setup, backbone, advance):
        extracted.append(backbone.ref)
        if len(extracted) > 1:
            raise ModelError("the second model cannot extract")
        return extract(setup, backbone, advance)

    monkeypatch.setattr(_pipeline, "score_extracted", score_extracted)
    monkeypatch.setattr(_pipeline, "extract_model", extract_model)
    for threads in (None, 1):  # pipelined, and in sequence: the same error
        extracted.clear()
        with pytest.raises(TransferlabError) as info:
            rank(digits, [tiny_model_ref, "builtin:pixels", tiny_model_ref], "logme", image_size=32,
                 use_cache=False, threads=threads)
        assert info.value is err
        assert len(extracted) <= 2  # stopped at the failure, not after the whole zoo
