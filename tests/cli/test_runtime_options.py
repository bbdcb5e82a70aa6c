"""--device, --precision and --threads on every command that computes (issue 28): a device this machine lacks is one
line and exit 2 before anything is written; the options reach the run."""

from __future__ import annotations

import pytest

from transferlab.cli import main

COMMANDS = ["rank", "fit", "predict", "eval", "merge", "domain", "distill", "continual", "prune", "auto",
            "zoo build"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_computing_command_has_device_precision_threads(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--device", "--precision", "--threads")), command


def test_a_missing_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "o"
    assert main(["fit", "builtin:digits", "-m", "builtin:small_resnet_shapes", "--method", "head", "--device", "cuda",
                 "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available here" in err and "Traceback" not in err and not out.exists()
    assert main(["fit", "builtin:digits", "-m", "builtin:small_resnet_shapes", "--device", "tpu", "-q"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


def test_precision_and_threads_reach_the_run(tiny_model_ref, tmp_path, monkeypatch):
    import torch

    from transferlab import _runtime

    seen = {}
    real = _runtime.autocast

    def spy(device, precision=None):
        seen["precision"] = _runtime.current_precision()
        seen["threads"] = torch.get_num_threads()
        return real(device, precision)

    monkeypatch.setattr(_runtime, "autocast", spy)
    assert main(["rank", "builtin:digits", "--zoo", tiny_model_ref, "--metrics", "knn", "--limit", "40",
                 "--image-size", "32", "--no-cache", "--precision", "bf16", "--threads", "1", "--device", "cpu",
                 "--out", str(tmp_path / "r"), "-q"]) == 0
    assert seen == {"precision": "bf16", "threads": 1}


@pytest.mark.parametrize("command", ["fit", "domain", "distill", "continual"])
def test_training_commands_take_devices(command, capsys):
    assert main([command, "--help"]) == 0
    assert "--devices" in capsys.readouterr().out


def test_devices_reaches_the_run(tiny_model_ref, tmp_path, monkeypatch, capsys):
    """--devices N goes through the runtime to train.on_devices, which starts N processes (replaced here by a
    recorder: tests/train/test_distributed.py starts real ones)."""
    from transferlab.errors import TransferlabError
    from transferlab.train import _distributed

    asked = []

    def record(fn, n, args, kwargs):
        asked.append(n)
        raise TransferlabError("recorded")

    monkeypatch.setattr(_distributed, "spawn", record)
    monkeypatch.setattr(_distributed, "_check_devices", lambda n: None)
    assert main(["fit", "builtin:digits", "-m", tiny_model_ref, "--method", "head", "--limit", "40",
                 "--devices", "2", "--out", str(tmp_path / "o"), "-q"]) == 2
    assert asked == [2] and "recorded" in capsys.readouterr().err


def test_a_run_config_file_sets_options_and_the_command_line_wins(tiny_model_ref, tmp_path):
    """--config run.yaml on every command (issue 29): the flags as YAML (- or _), validated, unknown keys refused,
    flags on the command line win."""
    import json

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: '{tiny_model_ref}'\nmethod: head\nepochs: 1\nimage-size: 32\nlimit: 40\n"
                   f"out: '{tmp_path / 'o'}'\ndevice: cpu\nthreads: 1\n")
    assert main(["fit", "builtin:digits", "--config", str(cfg), "--epochs", "2", "-q"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["epochs"] == 2 and m["image_size"] == 32 and m["n_train"] + m["n_val"] == 40


@pytest.mark.parametrize("body, message", [("epoch: 3\n", "epoch: Extra inputs are not permitted"),
                                           ("epochs: three\n", "epochs: Input should be a valid integer"),
                                           ("- 3\n", "a config file holds a mapping")])
def test_a_bad_run_config_is_one_error_naming_the_key(tmp_path, capsys, body, message):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(body)
    assert main(["domain", "builtin:digits", "builtin:digits-m", "--config", str(cfg)]) == 2
    assert message in capsys.readouterr().err


def test_the_benches_and_data_info_take_a_config_file_of_their_own_options(tmp_path, capsys):
    """--config on every bench and on data info too (the audit of issue 29 found "No such option: --config"): their
    own options only, validated the same way."""
    import json

    from transferlab.cli._app import app

    bench = next(g.typer_instance for g in app.registered_groups if g.name == "bench")
    for c in bench.registered_commands:
        assert main(["bench", c.name or c.callback.__name__, "--help"]) == 0
        assert "--config" in capsys.readouterr().out, c.name
    cfg = tmp_path / "p.yaml"
    cfg.write_text("seeds: ''\nbogus: 1\n")
    assert main(["bench", "prune", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bogus: Extra inputs are not permitted" in err and "device" in err and "threads" not in err
    cfg.write_text("split: test\njson: true\n")
    assert main(["data", "info", "builtin:digits", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "test"
