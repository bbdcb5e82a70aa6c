"""What a user sees first in a terminal (issue 12): help, version, shell completion."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from transferlab._version import __version__
from transferlab.cli import main


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transferlab", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str, capsys) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out.strip() == f"transferlab {__version__}"


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["rank", "-h"], ["fit", "-h"], ["bench", "merge", "-h"]])
def test_short_and_long_help(argv: list[str], capsys) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Usage: transferlab" in out and "Traceback" not in out


def test_shell_completion_script_and_completions() -> None:
    # name the shell explicitly: typer otherwise detects it from the parent processes, which a detached run lacks
    r = _run("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert r.returncode == 0 and "_transferlab_completion" in r.stdout
    r = _run(env={"_TRANSFERLAB_COMPLETE": "complete_bash", "COMP_WORDS": "transferlab ra", "COMP_CWORD": "1"})
    assert r.returncode == 0 and r.stdout.split() == ["rank"]


@pytest.mark.parametrize("width", [80, 120])
def test_rank_table_fits_the_terminal_and_names_the_recommended_model(width, tiny_model_ref, tmp_path, capsys,
                                                                       monkeypatch):
    import json

    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["rank", "builtin:digits", "--zoo", f"{tiny_model_ref},builtin:pixels", "--image-size", "32",
                 "--limit", "120", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(ln) for ln in lines if not ln.startswith("report: ")) <= width  # a path stays whole, to copy
    data = json.loads((tmp_path / "o" / "ranking.json").read_text())
    best, runner = data["models"][0], data["models"][1]
    rec = " ".join(out.split()).split("Recommended: ")[1]
    assert rec.startswith(best["name"]) and f"consensus {best['consensus_score']:.2f}" in rec
    assert f"{best['consensus_score'] - runner['consensus_score']:+.2f} over the runner-up" in rec
    assert "(baseline)" in out and "more metric(s): --wide" in out
    ranked = [ln for ln in lines if ln.startswith("│") and ln[1:].split("│")[0].strip().isdigit()]
    assert len(ranked) == 2 and all(ln.split("│")[3].strip() for ln in ranked)  # each number whole on its row
    knn = f"{best['scores']['knn']:.4g}"
    assert knn in out  # numbers intact


def test_rank_wide_prints_every_metric(tiny_model_ref, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["rank", "builtin:digits", "--zoo", "builtin:pixels", "--metrics", "logme,knn,sfda,gbc,hscore",
                 "--limit", "120", "--wide", "--out", str(tmp_path / "o")]) == 0
    header = next(ln for ln in capsys.readouterr().out.splitlines() if "consensus" in ln and "#" in ln)
    assert all(m in header for m in ("logme", "knn", "sfda", "gbc", "hscore"))


def test_fit_list_names_every_method(capsys):
    from transferlab.fit import list_methods

    assert main(["fit", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(m in out for m in list_methods())


def test_a_typo_in_a_fit_argument_is_named_with_the_right_spelling():
    from transferlab.errors import TransferlabError
    from transferlab.fit import fit

    with pytest.raises(TransferlabError, match=r"lora: no option 'epoch' \(did you mean 'epochs', an argument of "
                                               r"fit\?\); its options \(with defaults\): r=8"):
        fit("builtin:digits", "builtin:small_resnet_fashion", "lora", epoch=1)
    with pytest.raises(TransferlabError, match=r"no option 'dropuot' \(did you mean 'dropout'\?\)"):
        fit("builtin:digits", "builtin:small_resnet_fashion", "lora", dropuot=0.1)


def test_fit_predict_eval_take_limit_and_columns(tiny_model_ref, tmp_path, capsys):
    import json

    from transferlab.cli.fit import _load

    out = tmp_path / "m"
    assert main(["fit", "builtin:digits", "-m", tiny_model_ref, "--method", "head", "--epochs", "1",
                 "--image-size", "32", "--limit", "100", "--out", str(out), "-q"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] == 100
    assert main(["predict", str(out), "builtin:digits", "--limit", "30", "--output-file", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 30
    capsys.readouterr()
    assert main(["eval", str(out), "builtin:digits", "--limit", "40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 40
    csv = tmp_path / "t.csv"  # the column options reach the loader (fit, predict and eval share it)
    csv.write_text("sentence,topic\n" + "".join(f"words {i},{'ab'[i % 2]}\n" for i in range(20)))
    ds = _load(str(csv), "train", None, "sentence", "topic")
    assert ds.modality == "text" and ds.class_names == ("a", "b") and ds.items[0].startswith("words")


def test_renamed_flags_work_with_a_warning_and_are_hidden(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["rank", "builtin:digits", "--zoo", "builtin:pixels", "-m", "knn", "--limit", "60", "--out",
                 str(tmp_path / "o"), "-q"]) == 0
    assert "-m is deprecated; use --metrics" in capsys.readouterr().err
    import json

    assert json.loads((tmp_path / "o" / "ranking.json").read_text())["metrics"] == ["knn"]
    assert main(["rank", "-h"]) == 0
    help_text = capsys.readouterr().out
    assert "--metrics" in help_text and " -m " not in help_text
    assert main(["predict", "-h"]) == 0
    assert "--output-file" in capsys.readouterr().out
    assert main(["bench", "rank", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--fit-method" in out and "--protocol" not in out
