"""Every code block of the README runs as written, on tiny inputs (issue 12): the Python block, the zoo YAML and
every concrete `transferlab` command line (synopsis lines with placeholders are skipped). The substitutions below
only shrink the work (a tiny model for EfficientNet-Lite0, a few examples, one epoch); a command the test cannot
shrink fails the test, so a new README example cannot go untested."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    out = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.splitlines():
            cmd = line.split("#")[0].strip()
            if cmd.startswith("transferlab ") and not re.search(r"\[|\b[A-Z]{3,}\b", cmd):
                out.append(cmd)
    return out


def test_the_readme_has_the_blocks_this_test_runs():
    langs = [lang for lang, _ in BLOCKS]
    assert langs.count("python") == 1 and "yaml" in langs and len(_commands()) >= 8


def test_python_block_runs(tmp_path, monkeypatch, capsys):
    (code,) = [body for lang, body in BLOCKS if lang == "python"]
    code = code.replace('"builtin:vision", image_size=128', '"builtin:pixels,builtin:small_resnet_fashion", '
                                                           'image_size=32, limit=60')
    assert "limit=60" in code, "the README's rank call changed: update the substitution"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Recommended:" in out and (tmp_path / "runs" / "fmnist" / "report.html").is_file()


def test_yaml_zoo_block_loads(tmp_path):
    from transferlab.zoo import load_zoo

    (text,) = [body for lang, body in BLOCKS if lang == "yaml"]
    (tmp_path / "mine.yaml").write_text(text)
    z = load_zoo(tmp_path / "mine.yaml")
    assert z.name == "mine" and z.refs() == ["timm:convnext_tiny", "builtin:pixels"]


def _shrink(cmd: str, tiny: str) -> list[str]:
    argv = shlex.split(cmd)[1:]
    argv = [tiny if a == "builtin:efficientnet_lite0" else a for a in argv]
    sub = argv[0] if argv[0] != "bench" else "bench " + argv[1]
    if sub == "fit":
        argv += ["--limit", "60", "--test-limit", "60", "--epochs", "1"] + (
            [] if "builtin:minilm_l6" in argv else ["--image-size", "32"])
    elif sub in ("predict", "eval"):
        argv += ["--limit", "20"]
    elif sub == "bench merge":
        argv += ["--model", tiny, "--methods", "average", "--limit", "40", "--test-limit", "40", "--epochs", "1",
                 "--image-size", "32", "--out", "runs/bench-merge", "-q", "--targets", "builtin:digits,builtin:shapes"]
    elif sub == "merge":
        argv += ["-q"]
    elif sub == "domain":
        argv += ["--limit", "60", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--option", "hidden=32",
                 "-q"]
    elif sub == "distill":
        argv += ["--limit", "60", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "-q"]
    elif sub == "continual":
        argv += ["--limit", "20", "--test-limit", "20", "--epochs", "1", "--image-size", "16", "--batch-size", "8",
                 "-q"] + (["--option", "buffer_size=10"] if "replay" in argv else [])
    elif sub == "auto":
        argv += ["--zoo", "builtin:small_resnet_shapes", "--budget", "2m", "--limit", "60",
                 "--image-size", "32", "-q"]
    elif sub == "rank":  # the sentence-pair example
        argv += ["--limit", "60", "-q"]
    elif sub == "prune":
        argv += ["--limit", "60"]
    elif sub == "zoo" and "--source" in argv:  # pretraining: a quick one
        argv += ["--epochs", "1", "--limit", "60", "-q"]
    elif sub in ("metrics", "zoo", "data"):  # listings: cheap as they are
        pass
    else:
        raise AssertionError(f"no tiny version of the README command {cmd!r}: add one to tests/test_readme.py")
    return argv


def _is_pair_command(cmd: str) -> bool:
    """The sentence-pair example: its own chain (rank, fit, predict), run as its own test so that the two chains can
    run on two workers."""
    return "pairs" in cmd


def test_the_commands_split_into_the_two_chains():
    cmds = _commands()
    assert 0 < sum(map(_is_pair_command, cmds)) < len(cmds)


@pytest.mark.slow  # over 10 s on one core (issue 27)
def test_every_readme_command_runs(tmp_path, monkeypatch, tiny_model_ref):
    from transferlab.cli import main

    monkeypatch.chdir(tmp_path)
    for cmd in _commands():
        if _is_pair_command(cmd):
            continue
        argv = _shrink(cmd, tiny_model_ref)
        assert main(argv) == 0, cmd
    assert (tmp_path / "runs" / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "shapes-student" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "cl" / "heads").is_dir() and (tmp_path / "runs" / "cl-classes" / "report.html").is_file()
    assert (tmp_path / "merged-digits.csv").is_file() and (tmp_path / "predictions.csv").is_file()
    assert (tmp_path / "runs" / "auto-digits" / "report.html").is_file()
    assert (tmp_path / "runs" / "shapes-pruned" / "transferlab.json").is_file()


@pytest.mark.slow
def test_the_readme_pair_commands_run(tmp_path, monkeypatch, tiny_model_ref):
    from transferlab.cli import main

    monkeypatch.chdir(tmp_path)
    for cmd in filter(_is_pair_command, _commands()):
        assert main(_shrink(cmd, tiny_model_ref)) == 0, cmd
    assert (tmp_path / "runs" / "pairs-rank" / "ranking.json").is_file() and (tmp_path / "pair-predictions.csv").is_file()
