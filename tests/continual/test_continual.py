"""``transferlab.continual`` on tiny models: the GEM metrics of a fixed matrix, the streams and their errors, and the
strategies on a class-incremental stream where naive fine-tuning forgets and replay does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferlab.continual import class_split, list_strategies, run, summary, task_stream
from transferlab.data import Dataset
from transferlab.errors import TransferlabError

KW = dict(epochs=3, lr=1e-2, image_size=16, batch_size=8)


def four_colours(n: int, split: str, seed: int) -> Dataset:
    """Four separable classes: red, green, blue, white (noise elsewhere)."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for c in range(4):
        for _ in range(n):
            a = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            if c < 3:
                a[..., c] += 150
            else:
                a += 150
            items.append(a)
            labels.append(c)
    return Dataset(f"colours4-{split}", "image", np.stack(items), np.array(labels), ("red", "green", "blue", "white"),
                   split=split)


def test_gem_metrics_of_a_fixed_matrix():
    r = np.array([[0.9, 0.2, 0.1],
                  [0.6, 0.8, 0.3],
                  [0.7, 0.5, 0.95]])
    b = np.array([0.1, 0.15, 0.2])
    s = summary(r, b)
    assert s["acc"] == pytest.approx((0.7 + 0.5 + 0.95) / 3)
    assert s["bwt"] == pytest.approx(((0.7 - 0.9) + (0.5 - 0.8)) / 2)  # Avalanche's StreamBWT: the same number
    assert s["fwt"] == pytest.approx(((0.2 - 0.15) + (0.3 - 0.2)) / 2)
    assert s["forgetting"] == pytest.approx([0.2, 0.3])
    # ExSSNeT's "BWT" (final - maximum) differs when a task peaks after it was trained:
    r2 = np.array([[0.5, 0.0], [0.8, 0.9]])
    assert summary(r2, None)["bwt"] == pytest.approx(0.3) and summary(r2, None)["exssnet_bwt"] == pytest.approx(0.0)


AVALANCHE = json.loads((Path(__file__).parent / "data" / "avalanche_reference.json").read_text())


@pytest.mark.parametrize("case", AVALANCHE["cases"], ids=lambda c: f"T{len(c['r'])}")
def test_metrics_equal_avalanches_on_the_same_matrix(case):
    """BWT and FWT equal Avalanche's StreamBWT and StreamForwardTransfer (reference data: its plugins driven over
    the matrix). Avalanche's StreamForgetting is accuracy-just-after-training minus final (= −BWT); our per-task
    forgetting is Chaudhry's (best earlier accuracy minus final): they differ where a task peaks later."""
    r, b = np.array(case["r"]), np.array(case["b"])
    s = summary(r, b)
    assert s["bwt"] == pytest.approx(case["stream_bwt"], abs=1e-12)
    assert s["fwt"] == pytest.approx(case["stream_forward_transfer"], abs=1e-12)
    assert -s["bwt"] == pytest.approx(case["stream_forgetting"], abs=1e-12)
    t = len(r)
    chaudhry = np.mean([r[: t - 1, j].max() - r[t - 1, j] for j in range(t - 1)])
    assert s["mean_forgetting"] == pytest.approx(chaudhry)


def test_streams_and_their_errors(tmp_path):
    s = class_split("builtin:fashion-mnist", 5, limit=100, test_limit=50)
    assert s.kind == "class" and [t.classes for t in s.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert all(set(np.unique(t.train.labels)) <= set(t.classes) for t in s.tasks)
    with pytest.raises(TransferlabError, match=r"10 classes, which do not split into 3 equal groups; choose a divisor"):
        class_split("builtin:fashion-mnist", 3)
    with pytest.raises(TransferlabError, match="at least two tasks"):
        task_stream(["builtin:shapes"])
    texts = Dataset("texts", "text", ["a b", "c d"] * 4, np.array([0, 1] * 4), ("x", "y"), split="train")
    with pytest.raises(TransferlabError, match="one kind of data, got .*shapes: image, texts: text"):
        task_stream(["builtin:shapes", texts])
    (tmp_path / "s.yaml").write_text("tasks:\n  - {data: 'builtin:shapes', name: first}\n  - 'builtin:textures'\n"
                                     "limit: 30\n")
    from transferlab.continual import parse_stream

    y = parse_stream(str(tmp_path / "s.yaml"))
    assert [t.name for t in y.tasks] == ["first", "textures"] and len(y.tasks[0].train) == 30


def test_naive_forgets_and_replay_remembers_a_class_incremental_stream(tiny_model_ref, tmp_path):
    from transferlab.continual import Stream, Task

    tr, te = four_colours(12, "train", 0), four_colours(6, "test", 1)
    pick = lambda ds, cls: ds.subset(np.flatnonzero(np.isin(ds.labels, cls)))  # noqa: E731
    s = Stream("class", [Task("rg", pick(tr, [0, 1]), pick(te, [0, 1]), [0, 1], ["red", "green"]),
                         Task("bw", pick(tr, [2, 3]), pick(te, [2, 3]), [2, 3], ["blue", "white"])],
               ["red", "green", "blue", "white"])
    kw = {**KW, "epochs": 5}  # replay remembers in 4 of 4 seeds at 5 epochs (2 of 4 at 3 with the bicubic crops)
    naive = run(s, tiny_model_ref, "naive", out=tmp_path / "naive", **kw)
    r = naive.matrix
    assert r[0, 0] >= 0.9 and r[0, 1] == 0.0  # the first task learned; the second's classes not yet in the head
    assert naive.metrics["bwt"] <= -0.5  # then forgotten: the new classes take over the shared head
    rep = run(s, tiny_model_ref, "replay", buffer_size=16, **kw)
    assert rep.metrics["bwt"] > naive.metrics["bwt"] + 0.3 and rep.metrics["acc"] > naive.metrics["acc"] + 0.2
    joint = run(s, tiny_model_ref, "joint", **kw)
    assert joint.matrix.shape == (1, 2) and joint.metrics["bwt"] is None and joint.metrics["acc"] >= 0.9
    saved = json.loads((tmp_path / "naive" / "metrics.json").read_text())
    assert saved["accuracy_matrix"] == r.tolist() and "GEM" in (tmp_path / "naive" / "report.html").read_text()


def test_task_incremental_heads_save_and_load(tiny_model_ref, tmp_path):
    from transferlab.continual import Stream, Task
    from transferlab.models import ImageTensors, load, predict_logits, read_card

    tr, te = four_colours(8, "train", 0), four_colours(4, "test", 1)
    pick = lambda ds, cls: Dataset(ds.name, "image", ds.items[np.isin(ds.labels, cls)],  # noqa: E731
                                   ds.labels[np.isin(ds.labels, cls)] - cls[0], tuple(ds.class_names[c] for c in cls),
                                   split=ds.split)
    s = Stream("task", [Task("rg", pick(tr, [0, 1]), pick(te, [0, 1]), [0, 1], ["red", "green"]),
                        Task("bw", pick(tr, [2, 3]), pick(te, [2, 3]), [0, 1], ["blue", "white"])])
    results = {}
    for strategy, opts in (("ewc", {"ewc_lambda": 10.0}), ("lwf", {})):
        r = results[strategy] = run(s, tiny_model_ref, strategy, out=tmp_path / strategy, **{**KW, "epochs": 2},
                                    **opts)
        assert r.matrix.shape == (2, 2) and r.metrics["fwt"] is not None
        assert any(k.startswith("train_" + ("ewc_penalty" if strategy == "ewc" else "lwf_kl"))
                   for k in r.metrics["history"][1][0])  # the strategy's term acted on the second task
    card = read_card(tmp_path / "ewc")
    assert set(card.heads) == {"rg", "bw"} and card.method == "continual:ewc"
    for j, (name, task) in enumerate(zip(["rg", "bw"], s.tasks, strict=True)):
        z = predict_logits(load(tmp_path / "ewc", head=name), ImageTensors(task.test, 16, tuple(card.mean),
                                                                           tuple(card.std)), 16)
        assert float((z.argmax(1) == task.test.labels).mean()) == pytest.approx(results["ewc"].matrix[-1, j])


def test_bad_input_is_one_clear_error(tiny_model_ref):
    names = list_strategies()  # sorted, and a new strategy joins it (never an exact list that a new one breaks)
    assert names == sorted(names) and {"ewc", "exssnet", "joint", "lwf", "naive", "replay", "supsup"} <= set(names)
    with pytest.raises(TransferlabError, match=r"unknown continual strategy 'gem'; known: (\w+, )*ewc, "):
        run("builtin:shapes,builtin:textures", tiny_model_ref, "gem")
    with pytest.raises(TransferlabError, match=r"replay buffer \(5000\) is larger than the data"):
        run("builtin:shapes,builtin:textures", tiny_model_ref, "replay", buffer_size=5000, limit=30)
    with pytest.raises(TransferlabError, match="either a task stream"):
        run(None, tiny_model_ref, "naive")
    with pytest.raises(TransferlabError, match="ewc mode must be"):
        run("builtin:shapes,builtin:textures", tiny_model_ref, "ewc", mode="sometimes")


def test_continual_cli(tiny_model_ref, tmp_path, capsys):
    from transferlab.cli import main

    assert main(["continual", "--list"]) == 0 and "replay" in capsys.readouterr().out
    assert main(["continual", "--split", "builtin:fashion-mnist:4", "-m", tiny_model_ref, "-q"]) == 2
    assert "do not split into 4" in capsys.readouterr().err


def _three_tasks():
    from transferlab.continual import Stream, Task

    tr, te = four_colours(8, "train", 0), four_colours(4, "test", 1)

    def pick(ds, cls):
        keep = np.isin(ds.labels, cls)
        return Dataset(ds.name, "image", ds.items[keep], np.searchsorted(cls, ds.labels[keep]),
                       tuple(ds.class_names[c] for c in cls), split=ds.split)

    groups = [[0, 1], [2, 3], [1, 3]]
    return Stream("task", [Task(f"t{k}", pick(tr, g), pick(te, g), [0, 1], [tr.class_names[c] for c in g])
                           for k, g in enumerate(groups)])


@pytest.mark.parametrize("strategy", ["supsup", "exssnet"])
def test_supermasks_never_change_an_earlier_task(strategy, tiny_model_ref, tmp_path, monkeypatch):
    import torch

    from transferlab.continual._run import Run
    from transferlab.models import ImageTensors, load, predict_logits, read_card

    logits: dict[tuple[int, int], torch.Tensor] = {}
    accuracy = Run.accuracy

    def recording(self, j, upto, batch_size=64):
        out = accuracy(self, j, upto, batch_size)
        self.set_task(j)
        with torch.inference_mode():
            x = torch.stack([self.built.tensors(self.stream.tasks[j].test)[i][0]
                             for i in range(len(self.stream.tasks[j].test))])
            logits[(j, upto)] = self.logits(self.modules, self.modules["backbone"](x), j, upto).clone()
        return out

    monkeypatch.setattr(Run, "accuracy", recording)
    s = _three_tasks()
    r = run(s, tiny_model_ref, strategy, out=tmp_path / strategy, density=0.3, **{**KW, "epochs": 2})
    m = r.matrix
    assert r.metrics["bwt"] == 0.0 and r.metrics["mean_forgetting"] == 0.0
    for j in range(3):
        for i in range(j + 1, 3):  # after every later task: bit-identical outputs on task j
            assert torch.equal(logits[(j, i)], logits[(j, j)]), (j, i)
    assert r.metrics["mask_bits_per_task"] > 0
    from torch.nn.utils import parametrize

    assert any(parametrize.is_parametrized(mod) for mod in r.modules["backbone"].modules())  # saving copied it
    card = read_card(tmp_path / strategy)
    for j, task in enumerate(s.tasks):  # each task's saved network: its masked weights and its head
        net = load(tmp_path / strategy, head=f"t{j}")
        z = predict_logits(net, ImageTensors(task.test, 16, tuple(card.mean), tuple(card.std)), 16)
        assert float((z.argmax(1) == task.test.labels).mean()) == pytest.approx(m[-1, j])


def test_exssnet_trains_only_weights_no_earlier_mask_uses(tiny_model_ref, monkeypatch):
    import torch

    from transferlab.continual import _strategies

    seen = {}
    after_task = _strategies.Supermasks.after_task

    def snapshot(self, run_, i):  # the weights and the union of finished masks, after each task
        mods = dict(run_.modules["backbone"].named_modules())
        seen[i] = {n: (mods[n].parametrizations.weight.original.detach().clone(), sm.used.clone())
                   for n, sm in self.masks.items()}
        return after_task(self, run_, i)

    monkeypatch.setattr(_strategies.Supermasks, "after_task", snapshot)
    run(_three_tasks(), tiny_model_ref, "exssnet", density=0.3, **{**KW, "epochs": 2})
    changed = 0
    for n in seen[0]:
        w0, used0 = seen[0][n]
        w2, _ = seen[2][n]
        assert torch.equal(w0[used0], w2[used0]), n  # what task 0's mask uses never moved
        changed += int((w0 != w2).sum())
    assert changed > 0  # and the exclusive weights of the later tasks did train


def test_supermask_errors(tiny_model_ref):
    import torch

    from transferlab.continual._supermasks import install

    with pytest.raises(TransferlabError, match="needs a task-incremental stream"):
        run(None, tiny_model_ref, "supsup", split="builtin:fashion-mnist:5", limit=20)
    with pytest.raises(TransferlabError, match=r"density must lie in \(0, 1\]"):
        run("builtin:shapes,builtin:textures", tiny_model_ref, "exssnet", density=0)
    with pytest.raises(TransferlabError, match=r"score_lr_scale must be a finite number > 0, got 0"):
        run("builtin:shapes,builtin:textures", tiny_model_ref, "supsup", score_lr_scale=0)
    with pytest.raises(TransferlabError, match=r"head_lr_scale must be a finite number > 0, got nan"):
        run("builtin:shapes,builtin:textures", tiny_model_ref, "exssnet", head_lr_scale=float("nan"))
    with pytest.raises(TransferlabError, match="no convolution or linear weights to mask.*naive, joint, replay"):
        install(torch.nn.Sequential(torch.nn.ReLU()), 2, 0.1, 0)


def test_text_tasks_of_different_lengths_mix_in_replay_and_joint(tiny_text_ref):
    from tests.conftest import make_text_dataset

    from transferlab.continual import Stream, Task

    a, at = make_text_dataset(6), make_text_dataset(3, "test", seed=1)
    b0 = make_text_dataset(6, seed=2)
    b = Dataset("longer", "text", [t + " and more words here" * 3 for t in b0.items], b0.labels, b0.class_names,
                split="train")  # longer texts: another padded length
    s = Stream("task", [Task("a", a, at, [0, 1, 2], list(a.class_names)), Task("b", b, at, [0, 1, 2],
                                                                              list(b.class_names))])
    for strategy, opts in (("replay", {"buffer_size": 8}), ("joint", {})):
        r = run(s, tiny_text_ref, strategy, epochs=1, batch_size=8, **opts)
        assert 0 <= r.metrics["acc"] <= 1


def test_each_supermask_task_keeps_its_own_batch_norm_statistics(tiny_model_ref, monkeypatch):
    """A masked network's activations are not the full network's: with the pretrained running statistics (or
    frozen ones) its features barely vary and every task sat at chance. Each task's statistics are its own,
    recomputed on its data for its final mask, and the pretrained ones stay untouched for the next task."""
    import torch

    from transferlab.continual import _strategies
    from transferlab.models import build, resolve

    pretrained = {n: m.running_var.clone() for n, m in build(resolve(tiny_model_ref, False), 0).net.named_modules()
                  if isinstance(m, torch.nn.BatchNorm2d)}
    seen: dict[int, dict[str, torch.Tensor]] = {}
    after_task = _strategies.Supermasks.after_task

    def snapshot(self, run_, i):  # the statistics the backbone holds right after training task i
        seen[i] = {n: m.running_var.clone() for n, m in run_.modules["backbone"].named_modules()
                   if isinstance(m, torch.nn.BatchNorm2d)}
        return after_task(self, run_, i)

    monkeypatch.setattr(_strategies.Supermasks, "after_task", snapshot)
    r = run(_three_tasks(), tiny_model_ref, "supsup", density=0.3, **KW)
    control = next(m for m in r.modules["backbone"].modules() if hasattr(m, "control")).control
    assert set(control.norms) == set(pretrained) and len(control.stats) == 3
    for j in range(3):
        state = control.norm_state(j)
        for n in pretrained:
            assert torch.equal(state[f"{n}.running_var"], seen[j][n])  # what task j learnt is what it keeps
        assert not all(torch.equal(state[f"{n}.running_var"], pretrained[n]) for n in pretrained)
    assert not all(torch.equal(control.norm_state(0)[f"{n}.running_var"], control.norm_state(1)[f"{n}.running_var"])
                   for n in pretrained)
    assert np.diag(r.matrix).mean() > 0.6  # the masks learn (two classes per task: chance is 0.5)


def test_a_one_class_task_is_left_out_of_a_stream_and_said(tmp_path, caplog):
    """A one-class task counted 1.0 towards ACC (issue 29): it is left out, with a warning and a note in the stream's
    description (metrics.json's "stream")."""
    from tests.conftest import write_image_folder

    from transferlab.continual import parse_stream

    a = write_image_folder(tmp_path / "a", n_per_class=4)
    b = write_image_folder(tmp_path / "b", n_per_class=4, classes=("x", "y"))
    one = write_image_folder(tmp_path / "one", n_per_class=4, classes=("only",))
    with caplog.at_level("WARNING"):
        s = parse_stream(f"{a},{one},{b}")
    assert [t.name for t in s.tasks] == ["a", "b"] and "single class" in caplog.text
    assert s.describe().endswith("left out: one (one class: nothing to tell apart)")
    with pytest.raises(TransferlabError, match="at least two tasks of two or more classes; left out: one"):
        parse_stream(f"{a},{one}")


@pytest.mark.parametrize("body, message", [
    ("split: 'builtin:digits'\ngroups: five\n", "groups: Input should be a valid integer"),
    ("tasks: ['builtin:shapes', 'builtin:textures']\nepochs: 3\n", "epochs: Extra inputs are not permitted"),
    ("tasks: ['builtin:shapes']\nsplit: 'builtin:digits'\ngroups: 2\n", "give either 'tasks' or 'split'"),
    ("- builtin:shapes\n", "Input should be a valid dictionary"),
])
def test_a_stream_file_is_validated_strictly(tmp_path, body, message):
    """`groups: five` was a ValueError traceback and unknown keys were silently ignored (issue 29): the stream file
    is a pydantic model, as merge recipes and zoos are."""
    from transferlab.continual import parse_stream

    (tmp_path / "s.yaml").write_text(body)
    with pytest.raises(TransferlabError, match=message):
        parse_stream(str(tmp_path / "s.yaml"))
