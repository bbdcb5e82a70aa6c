"""``transferlab predict`` on data without labels: auto's own "Deploy:" command on a new folder of images; the CSV
has one row per input with its identifier, the model's class names and, with --proba, one probability column per
class; labelled data keeps its table; ``eval`` without labels is one error."""

from __future__ import annotations

import csv
import re
import shlex

import numpy as np
import pytest
from tests.conftest import write_image_folder

from transferlab.cli import main

CLASSES = ("red", "green", "blue")


@pytest.fixture(scope="module")
def auto_out(tmp_path_factory):
    """A finished ``transferlab auto`` run (a linear probe of a small built-in model: seconds)."""
    d = tmp_path_factory.mktemp("auto")
    data = write_image_folder(d / "data", n_per_class=10, classes=CLASSES, size=16)
    assert main(["auto", str(data), "--zoo", "builtin:small_resnet_shapes", "--budget", "30s", "--image-size", "32",
                 "--out", str(d / "out"), "-q"]) == 0
    return d / "out"


def _new_folder(root):
    """Images without class sub-folders (one level down for some: read recursively)."""
    src = write_image_folder(root.parent / "src", n_per_class=2, classes=CLASSES, size=16)
    (root / "later").mkdir(parents=True)
    for i, p in enumerate(sorted(src.rglob("*.png"))):
        (root / ("later" if i % 3 == 0 else "") / f"img{i}.png").write_bytes(p.read_bytes())
    return root


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_autos_deploy_command_predicts_a_new_folder(auto_out, tmp_path, monkeypatch, capsys):
    html = (auto_out / "report.html").read_text()
    hint = re.search(r"Deploy: <code>(transferlab predict [^<]*)</code>", html)
    assert hint is not None, "auto's report has no Deploy: command"
    new = _new_folder(tmp_path / "new")
    args = [{"OUT": str(auto_out), "NEW_DATA": str(new)}.get(a, a) for a in shlex.split(hint.group(1))[1:]]
    monkeypatch.chdir(tmp_path)  # the command's default output file: predictions.csv here
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "6 images under" in printed and "in path order" in printed and "6 predictions" in printed
    rows = _read(tmp_path / "predictions.csv")
    assert list(rows[0]) == ["index", "item", "prediction", "probability"]
    assert [r["item"] for r in rows] == sorted((str(p) for p in new.rglob("*.png")),
                                               key=lambda s: s[len(str(new)):])
    assert {r["prediction"] for r in rows} <= set(CLASSES)


def test_proba_columns_are_named_by_class_and_sum_to_one(auto_out, tmp_path, capsys):
    new = _new_folder(tmp_path / "new")
    assert main(["predict", str(auto_out), str(new), "--proba", "--output-file", str(tmp_path / "p.csv"), "-q"]) == 0
    rows = _read(tmp_path / "p.csv")
    names = sorted(CLASSES)
    assert list(rows[0]) == ["index", "item", "prediction", "probability"] + [f"proba_{c}" for c in names]
    for r in rows:
        p = np.array([float(r[f"proba_{c}"]) for c in names])
        assert p.sum() == pytest.approx(1, abs=1e-5)
        assert r["prediction"] == names[int(p.argmax())] and float(r["probability"]) == pytest.approx(p.max())
    # a labelled folder keeps its table (its test split, with the true label)
    data = auto_out.parent / "data"
    assert main(["predict", str(auto_out), str(data), "--output-file", str(tmp_path / "l.csv"), "-q"]) == 0
    rows = _read(tmp_path / "l.csv")
    assert list(rows[0]) == ["index", "item", "label", "prediction", "probability"]
    assert all(r["label"] == r["item"].split("/")[-2] for r in rows) and len(rows) == 6
    assert sum(r["label"] == r["prediction"] for r in rows) >= 5  # three colours: learnt


def test_a_csv_of_paths_with_its_id_column(auto_out, tmp_path, capsys):
    new = _new_folder(tmp_path / "new")
    paths = sorted(new.rglob("*.png"))
    table = tmp_path / "new.csv"
    table.write_text("photo,path\n" + "".join(f"p{i},{p.relative_to(tmp_path)}\n" for i, p in enumerate(paths)))
    assert main(["predict", str(auto_out), str(table), "--id-column", "photo", "--limit", "4",
                 "--output-file", str(tmp_path / "p.csv"), "-q"]) == 0
    rows = _read(tmp_path / "p.csv")
    assert [r["item"] for r in rows] == ["p0", "p1", "p2", "p3"]
    assert main(["predict", str(auto_out), str(new), "--output-file", str(tmp_path / "f.csv"), "-q"]) == 0
    by_path = {r["item"]: r["probability"] for r in _read(tmp_path / "f.csv")}
    assert [r["probability"] for r in rows] == [by_path[str(p)] for p in paths[:4]]  # the same inputs, in CSV order
    capsys.readouterr()
    assert main(["predict", str(auto_out), str(table), "--id-column", "nope", "--output-file",
                 str(tmp_path / "x.csv"), "-q"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_eval_without_labels_is_one_error(auto_out, tmp_path, capsys):
    new = _new_folder(tmp_path / "new")
    assert main(["eval", str(auto_out), str(new), "-q"]) == 2
    err = capsys.readouterr().err
    assert "evaluate needs labels" in err and "Traceback" not in err
