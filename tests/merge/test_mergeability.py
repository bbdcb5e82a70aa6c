"""The mergeability check (issue 33 item 3) on hand-built task vectors: sign conflicts, cosines and norms as worked
out by hand, a model that was not fine-tuned from the base and tokenizers that differ are warned about; every merge
records the check and prints its short form."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest


def _models(tmp_path: Path, foreign: bool = False) -> tuple[Path, list[Path]]:
    import torch
    from safetensors.torch import save_file

    base = {"w": torch.tensor([[3.0, 4.0], [0.0, 0.0]]), "b": torch.zeros(2)}
    taus = [{"w": torch.tensor([[1.0, 0.0], [0.0, -1.0]]), "b": torch.zeros(2)},
            {"w": torch.tensor([[-1.0, 0.0], [0.0, -1.0]]), "b": torch.zeros(2)}]
    paths = []
    for i, tau in enumerate(taus):
        paths.append(tmp_path / f"m{i}.safetensors")
        save_file({k: base[k] + tau[k] for k in base}, str(paths[-1]))
    if foreign:  # another starting point: weights as large as the base's, unrelated to them
        paths.append(tmp_path / "other.safetensors")
        save_file({"w": torch.tensor([[-4.0, 3.0], [2.0, 1.0]]), "b": torch.zeros(2)}, str(paths[-1]))
    save_file(base, str(tmp_path / "base.safetensors"))
    return tmp_path / "base.safetensors", paths


def test_statistics_as_worked_out_by_hand(tmp_path: Path) -> None:
    """tau1 = [[1,0],[0,-1]], tau2 = [[-1,0],[0,-1]] over w = [[3,4],[0,0]] (norm 5), biases untouched: of the two
    entries some task vector holds, one has both signs (1/2); <tau1, tau2> = -1 + 1 = 0; |tau| = sqrt 2 each, 28.3 % of
    the base's norm; one tensor of two (the bias) left as the base's."""
    from transferlab.merge import check_models

    base, paths = _models(tmp_path)
    r = check_models(base, paths)
    assert r.sign_conflict == pytest.approx(0.5)
    assert [x["sign_conflict"] for x in r.layers] == [None, 0.5]  # "b" (all zero), then "w" (the file's order)
    assert r.pairs[0]["cosine"] == pytest.approx(0.0, abs=1e-12)
    for m in r.models:
        assert m["relative_norm"] == pytest.approx(math.sqrt(2) / 5)
        assert m["norm_vs_largest"] == pytest.approx(1.0) and m["untouched_tensors"] == pytest.approx(0.5)
    assert r.warnings == [] and len(r.base_hash) == 16
    assert "sign conflicts in 50 % of entries" in r.short() and "28.3-28.3 %" in r.short()
    assert check_models(base, paths).base_hash == r.base_hash  # the same weights, the same hash


def test_a_model_from_another_base_is_warned_about_and_every_merge_records_the_check(tmp_path: Path) -> None:
    """other - base = [[-7,-1],[2,1]]: |.| = sqrt 55, 148 % of the base's norm: "not fine-tuned from this base"."""
    from transferlab.merge import check_models, merge_models

    base, paths = _models(tmp_path, foreign=True)
    r = check_models(base, paths)
    assert r.models[2]["relative_norm"] == pytest.approx(math.sqrt(55) / 5)
    assert len(r.warnings) == 1 and "other" in r.warnings[0] and "not fine-tuned from this base" in r.warnings[0]
    m = merge_models("average", base, paths, tmp_path / "out")
    assert m.mergeability.warnings == r.warnings and m.warnings == []  # the check on data has nothing to say
    saved = json.loads((tmp_path / "out" / "merge.json").read_text())["mergeability"]
    assert saved["warnings"] == r.warnings and saved["sign_conflict"] == pytest.approx(r.sign_conflict)


def test_tokenizers_that_differ_are_warned_about(tmp_path: Path) -> None:
    """vocab.txt differs: warned; tokenizer.json differing only in its truncation settings: the same vocabulary."""
    from transferlab.merge._compat import _tokenizers

    def folder(name: str, vocab: str, trunc: int) -> SimpleNamespace:
        d = tmp_path / name
        (d / "tokenizer").mkdir(parents=True)  # a fit directory keeps its tokenizer in a folder
        (d / "tokenizer" / "vocab.txt").write_text(vocab)
        (d / "tokenizer" / "tokenizer.json").write_text(json.dumps(
            {"model": {"vocab": vocab.split()}, "added_tokens": [], "truncation": {"max_length": trunc}}))
        return SimpleNamespace(path=d, label=name)

    a, b, c = folder("a", "[PAD]\nhello\nworld\n", 32), folder("b", "[PAD]\nhello\nworld\n", 64), \
        folder("c", "[PAD]\nworld\nhello\n", 32)
    assert _tokenizers([a, b]) == []
    (w,) = _tokenizers([a, b, c])
    assert w.startswith("c and a have different tokenizers (tokenizer.json, vocab.txt differ)")


def test_cli_check_prints_the_check(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from transferlab.cli import app

    base, paths = _models(tmp_path, foreign=True)
    models = [a for p in paths for a in ("--models", str(p))]
    res = CliRunner().invoke(app, ["merge", "--check", "--base", str(base), *models, "-q"])
    assert res.exit_code == 0, res.output
    assert "sign conflicts in" in res.output and "not fine-tuned from this base" in res.output
    assert not (tmp_path / "out").exists()
