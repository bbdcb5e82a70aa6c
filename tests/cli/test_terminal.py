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
