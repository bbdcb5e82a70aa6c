"""A rerun of rank with every feature cached (``make demo`` run twice) says it was warm and keeps the cold run's
timings, as the cache recorded them when the features and scores were computed: ranking.json, report.html and the
console. The cache entry records the cold extraction's time (done.json) and each score's (scores.json)."""

from __future__ import annotations

import json

import pytest

from transferlab.cli import main


def _rank(ref: str, out, cache, capsys) -> tuple[dict, str, str]:
    rc = main(["rank", "builtin:digits", "--zoo", f"{ref},builtin:pixels", "--metrics", "logme,knn,hscore",
               "--image-size", "32", "--limit", "120", "--out", str(out), "--cache-dir", str(cache)])
    assert rc == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps lines
    return json.loads((out / "ranking.json").read_text()), (out / "report.html").read_text(), printed


def test_a_warm_rerun_says_so_and_keeps_the_cold_timings(tiny_model_ref, tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    cold, _, printed = _rank(tiny_model_ref, out, cache, capsys)
    assert cold["cache"]["state"] == "cold" and cold["cache"]["features_from_cache"] == 0
    t = cold["timings"]
    assert t["forward_seconds"] > 0
    rec = cold["cache"]["cold"]
    assert rec["complete"] and rec["forward_seconds"] == pytest.approx(t["forward_seconds"], rel=1e-9)
    assert rec["metrics_seconds"] == pytest.approx(t["metrics_seconds"], rel=1e-9)
    assert "(cold: every model's features computed in this run)" in printed and "warm," not in printed

    warm, html, printed = _rank(tiny_model_ref, out, cache, capsys)  # the same command, the same --out
    assert warm["timings"]["forward_seconds"] == 0.0 and warm["timings"]["metrics_seconds"] == 0.0
    c = warm["cache"]
    assert c["state"] == "warm" and c["features_from_cache"] == 2 and c["scores_from_cache"] == 6
    # the cold run's timings, as recorded in the cache entries (the same numbers the cold run measured)
    assert c["cold"]["complete"] and c["cold"]["not_recorded"] == []
    assert c["cold"]["forward_seconds"] == pytest.approx(t["forward_seconds"], rel=1e-9)
    assert c["cold"]["metrics_seconds"] == pytest.approx(t["metrics_seconds"], rel=1e-9)
    assert c["cold"]["extraction_seconds"] == pytest.approx(rec["extraction_seconds"], rel=1e-9)
    for m in warm["models"]:  # per model too
        before = next(x for x in cold["models"] if x["model"] == m["model"])
        assert m["timings"]["cold"]["forward_seconds"] == pytest.approx(before["timings"]["forward_seconds"])
        assert m["timings"]["cold"]["features_from_cache"] and not before["timings"]["cold"]["features_from_cache"]
    # said in ranking.json, on the console and in the report
    said = "warm, the features of all 2 models came from the cache, so this is not what ranking costs"
    assert said in warm["timing_summary"] and said in printed
    assert f"cold (when they were computed, from {c['cold']['recorded_at'][:10]}): {c['cold']['seconds']:.1f} s" \
        in printed
    assert "<b>warm</b>: features from the cache" in html and said in html
    assert "cold, as recorded, s" in html


def test_cold_timings_survive_a_recomputed_chunk_and_are_absent_from_old_entries(tiny_model_ref, tmp_path):
    from transferlab.data import load_dataset
    from transferlab.zoo import FeatureCache, extract_features, resolve_model

    ds = load_dataset("builtin:digits").stratified_sample(100)
    cache = FeatureCache(tmp_path)
    b = resolve_model(tiny_model_ref)
    first = extract_features(b, ds, image_size=32, cache=cache, chunk_size=40)
    assert first.cold["chunks_computed"] == first.cold["chunks"] == 3
    assert first.cold["forward_seconds"] == first.seconds
    warm = extract_features(b, ds, image_size=32, cache=cache, chunk_size=40)
    assert warm.cache_hit and warm.seconds == 0 and warm.cold == first.cold
    entry = cache.entry(first.meta["cache_key"])
    (entry.path / "chunk-000001.npz").unlink()  # one chunk recomputed: the full cold record is kept
    again = extract_features(b, ds, image_size=32, cache=cache, chunk_size=40)
    assert again.meta["chunks_computed"] == 1 and again.cold == first.cold
    done = json.loads((entry.path / "done.json").read_text())
    del done["cold"]  # an entry written before timings were recorded
    (entry.path / "done.json").write_text(json.dumps(done))
    assert extract_features(b, ds, image_size=32, cache=cache, chunk_size=40).cold is None


def test_a_warm_rank_over_an_old_cache_says_the_cold_timings_are_unknown(tiny_model_ref, tmp_path):
    from transferlab.data import load_dataset
    from transferlab.rank import rank

    ds = load_dataset("builtin:digits").stratified_sample(100)
    rank(ds, ["builtin:pixels", tiny_model_ref], "logme", image_size=32, cache_dir=tmp_path)
    for done in tmp_path.glob("features/*/*/done.json"):  # as an earlier version wrote them
        d = json.loads(done.read_text())
        del d["cold"]
        done.write_text(json.dumps(d))
    r = rank(ds, ["builtin:pixels", tiny_model_ref], "logme", image_size=32, cache_dir=tmp_path)
    assert r.cache["state"] == "warm" and not r.cache["cold"]["complete"]
    assert "the cold run's timings were not recorded" in r.timing_summary()
