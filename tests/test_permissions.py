"""Outputs get the user's normal permissions (issue 12): temporary files are created 0600 and renamed into place;
what lands must be what a plain open() would have made (0666 less the umask; directories 0777 less the umask)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transferlab.cli import main


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def test_every_output_has_normal_permissions(umask_022, tiny_model_ref, tmp_path):
    fit_out, rank_out = tmp_path / "fit", tmp_path / "rank"
    assert main(["fit", "builtin:digits", "-m", tiny_model_ref, "--method", "head", "--epochs", "1", "--image-size",
                 "32", "--limit", "60", "--out", str(fit_out), "-q"]) == 0
    assert main(["rank", "builtin:digits", "--zoo", "builtin:pixels", "--metrics", "knn", "--limit", "60", "--out",
                 str(rank_out), "-q"]) == 0
    assert main(["predict", str(fit_out), "builtin:digits", "--limit", "20", "--output-file", str(tmp_path / "p.csv")]) == 0
    assert main(["merge", "--method", "average", "--base", tiny_model_ref, "--models", str(fit_out), str(fit_out),
                 "--names", "a", "b", "--out", str(tmp_path / "merged"), "-q"]) == 0
    for root in (fit_out, rank_out, tmp_path / "merged"):
        for name, mode in _modes(root).items():
            want = 0o755 if (root / name).is_dir() else 0o644
            assert mode == want, f"{root.name}/{name}: {oct(mode)}"
    assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o644
