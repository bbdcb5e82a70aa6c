"""rank(): end to end on small data with tiny and real models."""

import json

import numpy as np
import pytest

from transferlab.data import load_dataset
from transferlab.errors import DataError, MetricError, ModelError
from transferlab.rank import rank, score


@pytest.fixture
def digits():
    return load_dataset("builtin:digits").stratified_sample(200)


def test_rank_tiny_zoo_scores_ranks_consensus_and_cache(digits, tiny_model_ref, tmp_path):
    zoo = [tiny_model_ref, "builtin:pixels"]
    r = rank(digits, zoo, image_size=32, cache_dir=tmp_path)
    assert r.metrics == sorted(r.metrics) and "logme" in r.metrics
    assert sorted(m.consensus_rank for m in r.models) == [1, 2]
    pixels = next(m for m in r.models if m.model == "builtin:pixels")
    assert pixels.scores["leep"] is None and pixels.scores["nce"] is None  # no source head: not applicable
    tiny = next(m for m in r.models if m.model == tiny_model_ref)
    assert tiny.scores["leep"] is not None
    # each score equals the functional API on the same features
    from transferlab.zoo import FeatureCache, extract_features, resolve_model

    feats = extract_features(resolve_model("builtin:pixels"), digits, cache=FeatureCache(tmp_path))
    assert feats.cache_hit
    assert pixels.scores["logme"] == pytest.approx(score("logme", feats.features, digits.labels), rel=1e-12)
    # second run: no forward pass, same numbers
    r2 = rank(digits, zoo, image_size=32, cache_dir=tmp_path)
    assert r2.timings["forward_seconds"] == 0.0
    assert [m.scores for m in r2.models] == [m.scores for m in r.models]
    # a different image size is a different cache entry
    r3 = rank(digits, zoo, image_size=40, cache_dir=tmp_path)
    assert r3.timings["forward_seconds"] > 0.0


def test_outputs_follow_the_documented_schema(digits, tiny_model_ref, tmp_path):
    r = rank(digits, [tiny_model_ref, "builtin:pixels"], metrics="logme,knn,leep", image_size=32,
             cache_dir=tmp_path / "c")
    paths = r.save(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["dataset"]["name"] == "digits" and data["metrics"] == ["logme", "knn", "leep"]
    for m in data["models"]:
        assert set(m["scores"]) == {"logme", "knn", "leep"}
        assert isinstance(m["consensus_rank"], int) and m["model"] in (tiny_model_ref, "builtin:pixels")
    assert {"total_seconds", "forward_seconds", "metrics_seconds"} <= set(data["timings"])
    csv = paths["csv"].read_text().splitlines()
    assert csv[0].startswith("consensus_rank,model,name,consensus_score,logme,knn,leep")
    assert len(csv) == 3
    # one meaning everywhere: higher is better, so the first row holds the highest consensus score
    first, second = (float(row.split(",")[3]) for row in csv[1:])
    assert first >= second and data["models"][0]["consensus_score"] == pytest.approx(first)
    assert r.best().consensus_score == max(m.consensus_score for m in r.models)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 3
    import re

    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html), "the report must be self-contained"
    assert "<script" not in html and "<link" not in html


def test_bad_inputs_fail_before_any_work(digits, tmp_path):
    with pytest.raises(ModelError, match="unknown built-in model"):
        rank(digits, ["builtin:pixels", "builtin:nope"])
    with pytest.raises(MetricError, match="unknown metric"):
        rank(digits, ["builtin:pixels"], metrics="logme,magic")
    one_class = digits.subset(np.flatnonzero(digits.labels == 3))
    with pytest.raises(DataError, match="single class"):
        rank(one_class, ["builtin:pixels"])
    with pytest.raises(DataError, match="too small"):
        rank(digits, ["builtin:pixels"], limit=5)


def test_non_finite_features_name_the_model(digits, monkeypatch, tmp_path):
    from transferlab.zoo import _raw

    real = _raw.RawInputBackbone._batches

    def broken(self, *a, **k):
        for b in real(self, *a, **k):
            b.features[0, 0] = np.nan
            yield b

    monkeypatch.setattr(_raw.RawInputBackbone, "_batches", broken)
    with pytest.raises(MetricError, match=r"builtin:pixels.*metric .*non-finite"):
        rank(digits, ["builtin:pixels"], cache_dir=tmp_path)
    assert not list(tmp_path.rglob("*.npz")), "broken features must not be cached"
    monkeypatch.setattr(_raw.RawInputBackbone, "_batches", real)
    assert rank(digits, ["builtin:pixels"], cache_dir=tmp_path).models[0].scores["logme"] is not None


@pytest.mark.slow
def test_real_imagenet_models_beat_both_baselines_on_fashion_mnist(tmp_path):
    """The main claim of the demo, at a small scale: EfficientNet-Lite0 (ImageNet) ranks ahead of raw pixels and of
    the same architecture with random weights."""
    ds = load_dataset("builtin:fashion-mnist").stratified_sample(400)
    r = rank(ds, ["builtin:efficientnet_lite0", "builtin:pixels", "builtin:random_efficientnet_lite0"],
             metrics="logme,knn,linear_probe,hscore_shrinkage,leep", image_size=64, cache_dir=tmp_path)
    assert r.models[0].model == "builtin:efficientnet_lite0"
    lite = r.models[0].scores
    rand = next(m for m in r.models if "random" in m.model).scores
    assert lite["logme"] > rand["logme"] and lite["knn"] > rand["knn"] and lite["leep"] > rand["leep"]
    assert r.notes and r.notes[0].startswith("Every pretrained model ranks ahead")


@pytest.mark.slow
def test_rank_text_zoo_on_a_small_sample(tmp_path):
    ds = load_dataset("builtin:rotten-tomatoes").stratified_sample(90)
    r = rank(ds, ["builtin:minilm_l3", "builtin:tfidf"], metrics="logme,knn,hscore", cache_dir=tmp_path)
    assert {m.model for m in r.models} == {"builtin:minilm_l3", "builtin:tfidf"}
    assert all(v is not None for m in r.models for v in m.scores.values())


def test_rank_and_fit_on_an_image_folder(image_folder, tiny_model_ref, tmp_path):
    """Files on disk (PNG, one folder per class) go through the same paths as arrays."""
    from transferlab.fit import fit

    r = rank(image_folder, [tiny_model_ref, "builtin:pixels"], metrics="logme,knn", image_size=32,
             cache_dir=tmp_path)
    assert {m.model for m in r.models} == {tiny_model_ref, "builtin:pixels"}
    assert r.dataset["size"] == len(load_dataset(image_folder))
    f = fit(image_folder, tiny_model_ref, "head", epochs=1, image_size=32, val_fraction=0.0)
    assert f.metrics["test_accuracy"] is not None and f.metrics["val_accuracy"] is None


def test_baseline_notes_name_every_model_behind_the_best_baseline():
    from transferlab.rank._api import _baseline_notes
    from transferlab.rank._result import ModelScores, RankResult

    def ms(name, rank, baseline=False):
        return ModelScores(model=f"m:{name}", name=name, scores={}, ranks={}, consensus_rank=rank,
                           consensus_score=None, metadata={"baseline": baseline})

    few = RankResult({}, "z", [], [ms("a", 1), ms("pixels", 2, True), ms("b", 3)], {})
    assert _baseline_notes(few) == [_baseline_notes(few)[0]] and "b ranks behind the baseline pixels" in \
        _baseline_notes(few)[0]
    many = RankResult({}, "z", [], [ms("pixels", 1, True)] + [ms(f"s{i}", i + 2) for i in range(5)], {})
    notes = _baseline_notes(many)
    assert len(notes) == 1 and notes[0].startswith("5 pretrained models rank behind the baseline pixels")
    assert all(f"s{i}" in notes[0] for i in range(5))


def test_ped_uses_the_source_statistics_of_models_that_know_their_source_data():
    """The small zoo's models know their pretraining sets: PED applies to them (and not to pixels)."""
    import numpy as np

    from transferlab.rank import score
    from transferlab.zoo import FeatureCache, extract_features, resolve_model
    from transferlab.zoo.small import source_data

    ds = load_dataset("builtin:shapes").stratified_sample(90)
    r = rank(ds, ["builtin:small_resnet_textures", "builtin:small_vit_shapes", "builtin:pixels"], "ped,logme")
    by = {m.model: m.scores for m in r.models}
    assert by["builtin:pixels"]["ped"] is None and by["builtin:pixels"]["logme"] is not None
    b = resolve_model("builtin:small_vit_shapes")
    target = extract_features(b, ds, image_size=32, cache=FeatureCache()).features.astype(np.float64)
    src = extract_features(b, source_data("shapes", "train"), image_size=32, cache=FeatureCache()).features
    src = src.astype(np.float64)
    expected = score("ped", target, ds.labels, source_mean=src.mean(0), source_std=src.std(0))
    assert by["builtin:small_vit_shapes"]["ped"] == pytest.approx(expected, rel=1e-12)
    assert by["builtin:small_resnet_textures"]["ped"] is not None


def test_linear_probe_on_a_tiny_separable_image_folder(tmp_path):
    """3 colour classes x 8 images through the pixels baseline: with N - 1 = 17 PCA components of 18 training
    images, the probe's per-dimension z-scores whitened the points into a regular simplex and it scored 0.05 (below
    chance) where kNN scored 1.0. The baseline now keeps at most N / 2 components."""
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "tiny3", n_per_class=8, classes=("red", "green", "blue"), size=32)
    r = rank(root, "builtin:pixels", "linear_probe,knn", cache_dir=tmp_path / "c")
    assert r.models[0].scores["knn"] == 1.0
    assert r.models[0].scores["linear_probe"] == 1.0


def test_the_report_and_the_json_say_why_the_model_is_recommended(tmp_path):
    r = rank("builtin:digits", "builtin:pixels,builtin:small_resnet_fashion", "logme,knn", limit=100,
             cache_dir=tmp_path / "c")
    d = r.to_dict()
    assert d["recommendation"].startswith(f"Recommended: {r.best().name}")
    assert d["recommendation_why"].startswith(f"consensus {r.best().consensus_score:.2f} over 2 metrics")
    from transferlab.report import rank_report_html

    assert f"{r.best().name}</b> (<code>{r.best().model}</code>): {d['recommendation_why']}" in rank_report_html(d)
