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
    r = _run("--show-completion", "bash")
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
