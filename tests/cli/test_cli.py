"""The CLI calls the same functions as the API; errors are one line and exit status 2."""

import json
import subprocess
import sys

import pytest

from transferlab.cli import main


def test_rank_command_writes_outputs(tiny_model_ref, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["rank", "builtin:digits", "--zoo", f"{tiny_model_ref},builtin:pixels", "--metrics", "logme,knn",
               "--image-size", "32", "--limit", "120", "--out", str(out), "--cache-dir", str(tmp_path / "c")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "logme" in printed
    data = json.loads((out / "ranking.json").read_text())
    assert data["dataset"]["size"] == 120 and data["options"]["image_size"] == 32
    assert (out / "ranking.csv").is_file() and (out / "report.html").is_file()


def test_quiet_prints_only_the_report_path(tiny_model_ref, tmp_path, capsys):
    rc = main(["rank", "builtin:digits", "--zoo", "builtin:pixels", "--limit", "60", "--quiet", "--out",
               str(tmp_path / "o")])
    assert rc == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("report:")


@pytest.mark.parametrize("argv, message", [
    (["rank", "builtin:digits", "--zoo", "builtin:animals"], "unknown zoo 'builtin:animals'"),
    (["rank", "builtin:nope"], "unknown built-in dataset"),
    (["rank", "builtin:digits", "--zoo", "builtin:pixels", "--metrics", "logmee"], "unknown metric"),
    (["data", "info", "/does/not/exist"], "not found"),
])
def test_errors_are_one_clear_line(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path)] if argv[0] == "rank" else [])) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err


def test_data_info_and_zoo_list(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # a wide terminal: names are not wrapped (80 columns wrap them)
    assert main(["data", "info", "builtin:fashion-mnist", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == 2000 and info["num_classes"] == 10 and len(info["fingerprint"]) == 64
    assert main(["zoo", "list", "builtin:vision"]) == 0
    assert "EfficientNet-Lite2" in capsys.readouterr().out
    assert main(["metrics", "list"]) == 0
    assert "hscore_shrinkage" in capsys.readouterr().out


def test_help_is_fast_and_imports_no_torch():
    code = "import sys; from transferlab.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    r = subprocess.run([sys.executable, "-m", "transferlab", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "rank" in r.stdout


def test_fit_predict_eval(tiny_model_ref, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["fit", "builtin:digits", "--model", tiny_model_ref, "--method", "lora", "--epochs", "1",
                 "--image-size", "32", "--option", "r=4", "--out", str(out), "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    cfg = json.loads((out / "transferlab.json").read_text())
    assert cfg["options"] == {"r": 4} and cfg["method"] == "lora"
    assert main(["predict", str(out), "builtin:digits", "--output-file", str(tmp_path / "p.csv")]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "index,item,label,prediction,probability" and len(rows) == 1 + 359
    assert main(["eval", str(out), "builtin:digits", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    acc = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    assert res["accuracy"] == pytest.approx(acc)  # the same model on the same test split
    assert main(["fit", "builtin:digits", "--model", tiny_model_ref, "--method", "bitfit", "--epochs", "1",
                 "--image-size", "32", "--out", str(out), "--quiet"]) == 2
    assert "already holds a different model" in capsys.readouterr().err
