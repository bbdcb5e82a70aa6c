"""``transferlab auto`` on tiny inputs: the whole path writes a model directory predict and eval take, with a report
of every section; the plan's estimates come from measured probes; a killed run resumes at its stage; --dry-run
writes nothing; bad input (one class, an empty zoo, a budget too small) is one clear error; the data check finds
imbalance, tiny classes and train/test duplicates; the method follows the data size and the budget."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from transferlab.auto import _costs as C
from transferlab.auto import _plan as P
from transferlab.auto import auto, check_data, parse_budget
from transferlab.data import Dataset, load_dataset
from transferlab.errors import TransferlabError


def _folder(root, n=30, classes=("red", "green", "blue"), seed=0):
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
            a[..., ci % 3] += 150
            Image.fromarray(a).save(root / c / f"{c}_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def zoo():
    """Two small pretrained models shipped in the package (fast at their native 32 px) and a baseline."""
    return "builtin:small_resnet_shapes,builtin:small_convnext_textures,builtin:pixels"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, zoo):
    """One run, killed after two epochs of its first fit, then resumed to the end."""
    import transferlab.train._loop as loop

    d = tmp_path_factory.mktemp("auto")
    data = _folder(d / "data")
    real, saved = loop.save_checkpoint, []

    def killed_after_two_epochs(*a, **k):  # only the stage fits checkpoint (the probe fits write nothing)
        real(*a, **k)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt

    loop.save_checkpoint = killed_after_two_epochs
    try:
        with pytest.raises(KeyboardInterrupt):
            auto(str(data), zoo, budget="2m", out=d / "out", image_size=32)
    finally:
        loop.save_checkpoint = real
    killed = {"state": json.loads((d / "out" / "auto.json").read_text()),
              "checkpoints": (d / "out" / "work" / "fit-1" / "checkpoints").is_dir(),
              "finished_looking": (d / "out" / "transferlab.json").exists()}
    lines = []
    import transferlab.rank

    real_rank = transferlab.rank.rank
    transferlab.rank.rank = lambda *a, **k: pytest.fail("a finished stage is not redone")
    try:
        r = auto(str(data), zoo, budget="2m", out=d / "out", image_size=32, say=lines.append)
    finally:
        transferlab.rank.rank = real_rank
    return r, d, data, lines, killed


def test_whole_path_writes_a_model_predict_and_eval_take(finished):
    from transferlab.models import evaluate, predict

    r, d, data, lines, _ = finished
    out = d / "out"
    assert (out / "transferlab.json").is_file() and (out / "model.safetensors").is_file()
    test = load_dataset(str(data), "test")
    pred, probs, card = predict(out, test)
    assert probs.shape == (len(test), 3) and card["class_names"] == ["blue", "green", "red"]
    assert evaluate(out, test)["accuracy"] == pytest.approx(r.test_accuracy)
    assert r.test_accuracy >= 0.8  # three colours: learnt
    m = json.loads((out / "metrics.json").read_text())
    assert m["wall_seconds"] <= 1.1 * 120  # the budget is kept
    names = [s["name"] for s in m["plan"]["stages"]]
    assert names[:4] == ["check", "calibrate", "rank", "fit 1"] and names[-2:] == ["probe", "report"]
    assert all(s["measured"] is not None or s["skipped"] for s in m["plan"]["stages"])
    assert m["chosen"] in m["fits"] and m["val_accuracy"] == max(f["val_accuracy"] for f in m["fits"].values())
    assert "builtin:pixels" not in m["plan"]["candidates"]  # baselines are ranked, never adapted
    assert any(line.startswith("[fit 1]") for line in lines)  # each stage says what it does
    assert m["fits"]["probe"]["method"] == "linear_probe" and m["fits"]["probe"]["model"] == m["fits"]["fit 1"]["model"]
    html = (out / "report.html").read_text()
    for section in ("Data check", "Ranking, and why this model", "Method, and why", "Plan and measured time",
                    "Next steps", "The chosen model", "Confusion matrix", "Per class"):
        assert section in html, section
    assert "Recommended:" in html and "Grad-CAM" in html
    # three colours: the probe is as good as the fine-tune on validation, and on a tie the simpler model is kept
    assert (m["chosen"] == "probe") == ("at least as accurate on validation as any fitted model" in html)
    assert ("Learning curves" in html) == (m["method"] != "linear_probe")  # a probe has no epochs to plot


def test_estimates_come_from_measured_probes(finished):
    r = finished[0]
    cal = json.loads((finished[1] / "out" / "auto.json").read_text())["stages"]["calibrate"]
    assert set(cal["rank_cost"]["forward"]) == set(finished[0].ranking["models"][i]["model"]
                                                   for i in range(len(finished[0].ranking["models"])))
    assert all(v > 0 for v in cal["rank_cost"]["forward"].values())
    fit1 = r.plan.stage("fit 1")
    cost = C.FitCost(**cal["fit_cost"][f"{fit1.options['model']}|{fit1.options['method']}"])
    assert cost.train_per_example > 0
    assert fit1.estimate == pytest.approx(cost.estimate(*_sizes(finished[2]), fit1.options["epochs"]))
    # the bound a budget is refused by before calibrating stays under what the cheapest plan's stages really took
    n_train, _, n_test = _sizes(finished[2])
    spent = sum(r.plan.stage(s).measured for s in ("check", "calibrate", "rank"))
    assert P.floor_seconds(len(cal["rank_cost"]["load"]), n_train, n_test) < spent / 10


def _sizes(data):
    n = len(load_dataset(str(data)))
    tr, val = P.split_sizes(n)
    return tr, val, len(load_dataset(str(data), "test"))


def test_a_killed_run_resumes_at_its_stage(finished, zoo):
    r, d, data, lines, killed = finished
    state = killed["state"]
    assert [k for k, v in state["stages"].items() if v["done"]] == ["check", "calibrate", "rank"]
    assert killed["checkpoints"] and not killed["finished_looking"]  # two epochs kept; nothing looks finished
    assert lines[0].startswith("resuming: check, calibrate, rank done before")
    after = json.loads((d / "out" / "auto.json").read_text())
    assert after["plan"]["stages"][3]["options"] == state["plan"]["stages"][3]["options"]  # the plan it started with
    with pytest.raises(TransferlabError, match="already holds a finished auto run"):
        auto(str(data), zoo, budget="2m", out=d / "out", image_size=32)
    # --overwrite (last: it replaces the fixture's run): a new run in a sibling, swapped in when complete
    r2 = auto(str(data), zoo, budget="2m", out=d / "out", image_size=32, overwrite=True, seed=1)
    assert r2.out == d / "out" and not list(d.glob(".out.auto-new*"))
    assert json.loads((d / "out" / "auto.json").read_text())["identity"]["seed"] == 1
    assert all((d / "out" / f["dir"]).is_dir() for f in r2.metrics["fits"].values())  # paths still resolve


def test_dry_run_plans_and_writes_nothing(tmp_path, zoo, capsys, monkeypatch):
    from transferlab.cli import main

    data = _folder(tmp_path / "data", n=20)
    monkeypatch.chdir(tmp_path)
    assert main(["auto", str(data), "--zoo", zoo, "--budget", "10m", "--image-size", "32", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "plan (" in printed and "fit 1" in printed and "method: partial" in printed and "report" in printed
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    one = _folder(tmp_path / "one", n=10, classes=("red",))
    assert main(["auto", str(one), "--zoo", zoo, "--dry-run"]) == 2
    assert "one class" in capsys.readouterr().err


def test_bad_input(tmp_path, zoo):
    one = _folder(tmp_path / "one", n=10, classes=("red",))
    with pytest.raises(TransferlabError, match="one class"):
        auto(str(one), zoo, budget="5m", dry_run=True)
    data = _folder(tmp_path / "data", n=12)
    (tmp_path / "empty.yaml").write_text("name: empty\nmodels: []\n")
    with pytest.raises(TransferlabError, match="no usable models|at least one"):
        auto(str(data), str(tmp_path / "empty.yaml"), budget="5m", dry_run=True)
    with pytest.raises(TransferlabError, match="no pretrained image model"):
        auto(str(data), "builtin:pixels", budget="5m", dry_run=True)
    with pytest.raises(TransferlabError, match=r"too small for even the cheapest plan.*needs about .*--budget \d+[sm]"):
        auto(str(data), zoo, budget="1s", image_size=32, dry_run=True)
    for bad in ("", "soon", "-5m", "0s"):
        with pytest.raises(TransferlabError, match="--budget"):
            parse_budget(bad)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    with pytest.raises(TransferlabError, match="holds no transferlab auto run"):
        auto(str(data), zoo, budget="5m", out=tmp_path / "other")


def test_parse_budget():
    assert parse_budget("15m") == 900 and parse_budget("90s") == 90 and parse_budget("1h30m") == 5400
    assert parse_budget("1.5h") == 5400 and parse_budget(120) == 120 and parse_budget("45") == 45


def test_data_check_finds_imbalance_tiny_classes_and_duplicates():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (70, 8, 8), dtype=np.uint8)
    y = np.array([0] * 60 + [1] * 6 + [2] * 4)
    train = Dataset("t", "image", x, y, ("a", "b", "c"))
    test = Dataset("t", "image", np.concatenate([x[:3], rng.integers(0, 255, (5, 8, 8), dtype=np.uint8)]),
                   np.array([0, 0, 0, 1, 1, 2, 2, 0]), ("a", "b", "c"), "test")
    found = {f.check: f for f in check_data(train, test)}
    assert found["imbalance"].level == "warning" and found["imbalance"].details["ratio"] == 15.0
    assert found["tiny_classes"].details["classes"] == {"b": 6, "c": 4}
    assert found["duplicates"].details["count"] == 3 and found["duplicates"].details["test_indices"] == [0, 1, 2]
    texts = Dataset("t", "text", ["Good  film", "bad film", "ok"], np.array([0, 1, 1]), ("p", "n"))
    dup = check_data(texts, Dataset("t", "text", ["good film"], np.array([0]), ("p", "n"), "test"))
    assert next(f for f in dup if f.check == "duplicates").details["count"] == 1  # spacing and case aside
    clean = {f.check: f.level for f in check_data(Dataset("t", "image", x[:20], np.arange(20) % 2, ("a", "b")),
                                                    None)}
    assert clean == {"classes": "ok"}


def test_method_follows_data_size_model_size_and_budget():
    assert P.choose_method(5, "image", 10**6, 20)[0] == "linear_probe"  # few examples per class
    assert P.choose_method(200, "image", 10**6, 2)[0] == "linear_probe"  # no time for 3 epochs
    assert P.choose_method(200, "image", 10**6, 10)[0] == "partial"
    assert P.choose_method(2000, "image", 10**6, 10)[0] == "partial"  # never full fine-tuning (docs/auto.md)
    assert P.choose_method(200, "text", 110 * 10**6, 10)[0] == "lora"
    why = P.choose_method(200, "text", 10**6, 10)[1]
    assert re.search(r"200 examples per class and time for 10 epochs", why)
    assert P.patience(4) == 3 and P.patience(13) == 7  # half a long schedule: its low rates come late


def test_rank_estimate_scales_its_parts():
    c = C.RankCost(load={"a": 2.0}, forward={"a": 0.01}, metrics={"a": 1.0}, cached={}, probe_order=["a"],
                   n_probe=100, overhead=0.5)
    assert c.estimate(400) == pytest.approx(0.5 + 2.0 + 400 * 0.01 + 1.0 * 2.0)  # metrics: sqrt(400 / 100)
    assert c.estimate(50) == pytest.approx(0.5 + 2.0 + 0.5 + 0.5)  # below the probe: in proportion
    c.cached["a"] = True
    assert c.estimate(400) == pytest.approx(0.5 + 2.0 + 2.0)  # cached features: no forward pass


def test_text_models_cost_per_padded_token():
    # each batch of 2 padded to its longest: 2*5 + 2*2 + 1*7 (a lone long text costs as much as a batch of it)
    assert C.padded_tokens(np.array([5, 1, 2, 2, 7]), batch_size=2) == 10 + 4 + 7
    c = C.RankCost(load={"t": 1.0, "i": 1.0}, forward={"t": 0.001, "i": 0.01}, metrics={"t": 0.0, "i": 0.0},
                   cached={}, probe_order=["t"], n_probe=100, tokens={"t": {"100": 9000.0, "400": 12000.0}})
    assert c.estimate(400, ["t"]) == pytest.approx(1.0 + 12000 * 0.001)  # the sample's tokens, not 4x the probe's
    assert c.estimate(200, ["t"]) == pytest.approx(1.0 + 9000 * 2 * 0.001)  # untabled: the nearest size's rate
    assert c.estimate(400, ["i"]) == pytest.approx(1.0 + 400 * 0.01)  # an image model: per example
    assert c.per_example("t", 400) == pytest.approx(12000 * 0.001 / 400)  # what a linear probe's estimate takes
    assert c.per_example("i", 400) == pytest.approx(0.01)
    again = C.RankCost(**json.loads(json.dumps(c.__dict__)))  # the record of a resumed run
    assert again.estimate(400) == pytest.approx(c.estimate(400))
    sizes = C.sample_sizes(5000, 128)  # every size rank_sample may choose is tabled
    assert sizes[0] == C.RANK_LIMIT and sizes[-1] == 128 and sizes == sorted(sizes, reverse=True)
    assert C.sample_sizes(50, 128) == [50]
    assert P.rank_sample(c, 5000, 1e9) == C.RANK_LIMIT


def test_text_token_table_follows_each_sample(tiny_text_ref, tiny_text_model_dir):
    from tests.conftest import make_text_dataset
    from transformers import AutoTokenizer

    from transferlab.zoo import load_zoo

    train = make_text_dataset(n_per_class=60)
    table = C._padded_tokens(train, load_zoo(f"{tiny_text_ref},builtin:tfidf"), (32, 96), seed=0)
    assert set(table) == {tiny_text_ref}  # TF-IDF's cost does not follow tokens
    tok = AutoTokenizer.from_pretrained(str(tiny_text_model_dir))
    for n in (32, 96, len(train)):
        items = list(train.stratified_sample(n, seed=0).items)
        lengths = [len(tok(t)["input_ids"]) for t in items]  # [CLS] words [SEP]
        expect = sum(len(lengths[i:i + 64]) * max(lengths[i:i + 64]) for i in range(0, len(lengths), 64))
        assert table[tiny_text_ref][str(n)] == expect


def test_a_cheap_probe_is_planned_beside_the_fine_tune_and_kept_on_a_tie():
    from transferlab.auto._api import keep
    from transferlab.auto._ledger import Ledger
    from transferlab.auto._planning import Costing, _make_plan

    train = Dataset("t", "image", np.zeros((1000, 8, 8, 3), np.uint8), np.repeat(np.arange(4), 250), tuple("abcd"))
    rank = C.RankCost(load={"m": 1.0}, forward={"m": 0.001}, metrics={"m": 1.0}, cached={}, probe_order=["m"],
                      n_probe=128)
    probe, partial = C.FitCost(4.0, 0.001, 0.001, 10**6), C.FitCost(5.0, 0.01, 0.002, 10**6)
    costs = {"m|linear_probe": probe, "m|partial": partial}

    def plan(budget):
        return _make_plan(Ledger(None, {}, budget, lambda *_: None), Costing(train, None, rank, dict(costs), None, 0),
                          500, ["m"], 0.0)

    p = plan(600.0)
    names = [s.name for s in p.stages]
    assert names == ["check", "calibrate", "rank", "fit 1", "probe", "report"] and p.method == "partial"
    st = p.stage("probe")
    assert st.options["method"] == "linear_probe" and st.options["model"] == "m"
    assert st.estimate == pytest.approx(probe.estimate(900, 100, 0, 1)) and st.estimate <= 0.1 * 600
    small = plan(st.estimate * 9)  # the probe would be more than 10 % of the budget: none
    assert "probe" not in [s.name for s in small.stages]
    for budget in (600.0, 300.0):  # the probe never takes time from the fit: it runs in what the fit leaves
        fit1 = plan(budget).stage("fit 1")
        left = budget - rank.estimate(500) - P.RESERVE_SHARE * budget
        assert fit1.options["budget_seconds"] == pytest.approx(left, abs=0.5)
        assert fit1.options["epochs"] == min(P.MAX_EPOCHS, P.epochs_affordable(partial, 900, 100, 0, left))
    # the best validation accuracy is kept; on a tie the simpler model
    fits = {"probe": {"val_accuracy": 0.98}, "fit 1": {"val_accuracy": 0.99}, "fit 2": {"val_accuracy": 0.97}}
    assert keep(fits) == "fit 1"
    fits["probe"]["val_accuracy"] = 0.99
    assert keep(fits) == "probe"
    assert keep({"fit 1": {"val_accuracy": 0.9}, "fit 2": {"val_accuracy": 0.9}}) == "fit 1"


@pytest.mark.slow
def test_a_text_model_kept_by_auto_carries_its_card_and_tokenizer(tiny_text_ref, tmp_path, capfd):
    """auto copied the chosen fit without its README.md card and top-level tokenizer files (text models open in
    plain transformers tooling from them): written for the auto folder itself. transformers' "Loading weights" bar
    of each of the run's loads of the model stays out of its output."""
    from tests.conftest import make_text_dataset

    from transferlab.auto import auto

    out = tmp_path / "out"
    capfd.readouterr()
    auto(make_text_dataset(12), tiny_text_ref, budget="40s", out=out, test=make_text_dataset(6, "test", 1))
    assert "Loading weights" not in capfd.readouterr().err
    readme = (out / "README.md").read_text()
    assert "[More Information Needed]" not in readme and str(tmp_path) not in readme
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()
