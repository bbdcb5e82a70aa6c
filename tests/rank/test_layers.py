"""rank(..., layers=): ``last`` gives the numbers of before; ``best`` finds the informative layer; the CLI option."""

import json

import numpy as np
import pytest

from transferlab.data import load_dataset
from transferlab.data._dataset import Dataset
from transferlab.errors import TransferlabError
from transferlab.rank import rank, score
from transferlab.zoo._backbone import Backbone, Batch


class ThreeLayers(Backbone):
    """Three layers of 6 features; only layer ``informative`` separates the classes (the others are noise); the
    output is the last layer."""

    modality = "any"

    def __init__(self, ref, informative):
        self.ref, self.informative = ref, informative

    def identity(self):
        return {"ref": self.ref, "informative": self.informative}

    def _all(self, ds):
        rng = np.random.default_rng(1)
        y = np.asarray(ds.labels)
        layers = [rng.standard_normal((len(y), 6)) for _ in range(3)]
        layers[self.informative] += 4.0 * np.eye(6)[y]
        return [x.astype(np.float32) for x in layers]

    def _batches(self, ds, indices, *, batch_size, image_size):
        yield Batch(self._all(ds)[-1][indices], None)

    def _layer_batches(self, ds, indices, *, batch_size, image_size):
        yield Batch(np.hstack(self._all(ds))[indices], None, (6, 6, 6))


@pytest.fixture
def synthetic(monkeypatch):
    import transferlab.zoo as zoo

    real = zoo.resolve_model
    fakes = {"test:middle": ThreeLayers("test:middle", 1), "test:first": ThreeLayers("test:first", 0)}
    monkeypatch.setattr(zoo, "resolve_model", lambda ref, **kw: fakes.get(ref) or real(ref, **kw))
    x = np.zeros((90, 1))
    return Dataset("three", "array", x, np.arange(90) % 3, ("a", "b", "c"))


def test_best_keeps_the_layer_whose_features_score_best(synthetic, tmp_path):
    metrics = ["logme", "knn", "hscore"]
    last = rank(synthetic, ["test:middle", "test:first"], metrics, cache_dir=tmp_path)
    best = rank(synthetic, ["test:middle", "test:first"], metrics, cache_dir=tmp_path, layers="best")
    assert best.options["layers"] == "best"
    for m in best.models:
        informative = 1 if m.model == "test:middle" else 0
        assert m.metadata["layers"]["best_layer"] == {k: informative for k in metrics}
        assert m.metadata["layers"]["count"] == 3
        layer = ThreeLayers(m.model, informative)._all(synthetic)[informative]
        assert m.scores["logme"] == pytest.approx(score("logme", layer, synthetic.labels), rel=1e-9)
        output = next(o for o in last.models if o.model == m.model)
        assert m.scores["logme"] > output.scores["logme"] + 0.5  # the noise output scores far lower
        assert m.metadata["layers"]["layer_scores"]["logme"][-1] == pytest.approx(output.scores["logme"], rel=1e-9)
    # warm: every layer's scores come from the cache, the same numbers
    again = rank(synthetic, ["test:middle", "test:first"], metrics, cache_dir=tmp_path, layers="best")
    assert again.cache["scores_from_cache"] == 2 * len(metrics)
    assert [m.scores for m in again.models] == [m.scores for m in best.models]


def test_mean_ranks_the_mean_of_the_layers(synthetic, tmp_path):
    r = rank(synthetic, ["test:middle"], ["logme"], cache_dir=tmp_path, layers="mean")
    mean = np.mean([x.astype(np.float64) for x in ThreeLayers("test:middle", 1)._all(synthetic)], axis=0)
    assert r.models[0].scores["logme"] == pytest.approx(score("logme", mean.astype(np.float32), synthetic.labels),
                                                        rel=1e-9)
    assert r.models[0].metadata["layers"]["averaged"] == [0, 1, 2]


def test_last_is_the_default_and_gives_the_same_numbers(tmp_path):
    digits = load_dataset("builtin:digits").stratified_sample(120, seed=0)
    zoo = ["builtin:small_resnet_shapes", "builtin:pixels"]
    default = rank(digits, zoo, "logme,leep,gbc", image_size=32, cache_dir=tmp_path / "a")
    last = rank(digits, zoo, "logme,leep,gbc", image_size=32, cache_dir=tmp_path / "b", layers="last")
    assert [m.scores for m in default.models] == [m.scores for m in last.models]  # bit for bit
    assert all("layers" not in m.metadata for m in last.models)
    best = rank(digits, zoo, "logme,leep,gbc", image_size=32, cache_dir=tmp_path / "a", layers="best")
    by = {m.model: m for m in best.models}
    for m in default.models:
        assert by[m.model].scores["leep"] == m.scores["leep"]  # source-head metrics do not read the layers
        assert by[m.model].scores["logme"] >= m.scores["logme"]  # the output is one of the layers
    assert by["builtin:pixels"].metadata["layers"]["count"] == 1


def test_unknown_mode_fails_before_any_work(synthetic, tmp_path):
    with pytest.raises(TransferlabError, match="unknown layer mode 'all'"):
        rank(synthetic, ["test:middle"], ["logme"], cache_dir=tmp_path, layers="all")


def test_cli_layers_option(tmp_path, capsys):
    from transferlab.cli import main

    out = tmp_path / "out"
    assert main(["rank", "builtin:digits", "--zoo", "builtin:small_vit_shapes,builtin:pixels", "--metrics", "logme",
                 "--limit", "60", "--layers", "best", "--out", str(out), "--quiet", "--cache-dir",
                 str(tmp_path / "c")]) == 0
    data = json.loads((out / "ranking.json").read_text())
    vit = next(m for m in data["models"] if m["model"] == "builtin:small_vit_shapes")
    assert vit["metadata"]["layers"]["count"] == 7 and 0 <= vit["metadata"]["layers"]["best_layer"]["logme"] < 7
    assert data["options"]["layers"] == "best"
    capsys.readouterr()
    assert main(["rank", "builtin:digits", "--layers", "deepest", "--out", str(tmp_path / "x")]) == 2
    assert "unknown layer mode 'deepest'" in capsys.readouterr().err


def test_on_a_backend_each_job_scores_the_layers_asked_for(tmp_path):
    from transferlab.bench import LocalBackend

    class Inline(LocalBackend):
        name = "inline"  # not "local": rank takes the job path (what Ray runs), in-process

    digits = load_dataset("builtin:digits").stratified_sample(60, seed=0)
    kw = dict(metrics="logme,knn", image_size=32, layers="best")
    here = rank(digits, ["builtin:small_vit_shapes", "builtin:pixels"], cache_dir=tmp_path / "a", **kw)
    jobs = rank(digits, ["builtin:small_vit_shapes", "builtin:pixels"], cache_dir=tmp_path / "b", backend=Inline(),
                **kw)
    assert [m.scores for m in jobs.models] == [m.scores for m in here.models]
    assert [m.metadata["layers"] for m in jobs.models] == [m.metadata["layers"] for m in here.models]
    assert jobs.models[0].metadata["layers"]["count"] in (1, 7)
