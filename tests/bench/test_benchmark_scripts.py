"""benchmarks/bench_distill_ncd.py and benchmarks/merge_text_tasks.py, run on fakes: a resumed record of other
settings is refused; a CSV is replaced whole or not at all (H8's review)."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_script_{name}", ROOT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_distill_ncd_resumes_only_records_of_the_same_settings(tmp_path, monkeypatch):
    import transferlab.distill._ncd as ncd

    calls = []

    def fake_discover(*args, **kw):
        calls.append(kw)
        m = {"novel_cluster_accuracy": 0.5, "known_accuracy": 0.9, "n_known": 1, "n_unlabelled": 1,
             "n_test_novel": 1, "history": [{}]}
        return type("R", (), {"metrics": m})()

    monkeypatch.setattr(ncd, "discover", fake_discover)
    script, out = _script("bench_distill_ncd"), str(tmp_path / "r.json")
    monkeypatch.setattr("sys.argv", ["x", "--out", out, "--seeds", "0", "--kd-weights", "0"])
    script.main()
    assert len(calls) == 1
    # more seeds and weights: the saved record is resumed, only the new ones run
    monkeypatch.setattr("sys.argv", ["x", "--out", out, "--seeds", "0,1", "--kd-weights", "0"])
    script.main()
    assert len(calls) == 2 and calls[-1]["seed"] == 1
    # another setting: the saved records were made otherwise; resuming them would mix two settings in one table
    monkeypatch.setattr("sys.argv", ["x", "--out", out, "--seeds", "0,1", "--kd-weights", "0", "--epochs", "3"])
    with pytest.raises(SystemExit, match="epochs"):
        script.main()
    assert len(calls) == 2 and len(json.loads(Path(out).read_text())) == 2


def test_merge_text_tasks_leaves_the_old_csv_whole_when_writing_fails(tmp_path, monkeypatch):
    script = _script("merge_text_tasks")
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(script.MEMBERS["sms"], "spam,text\n1,win now\n0,hi mum\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sms_spam.csv").write_text("text,label\nold,ham\n")

    class Broken:
        def __init__(self, f):
            self.f = f

        def writerow(self, row):
            self.f.write(",".join(row) + "\n")

        def writerows(self, rows):
            raise OSError("disk full")

    monkeypatch.setattr(script.csv, "writer", Broken)
    with pytest.raises(OSError, match="disk full"):
        script.main(str(wheel), str(out))
    assert (out / "sms_spam.csv").read_text() == "text,label\nold,ham\n"
    assert [p.name for p in out.iterdir()] == ["sms_spam.csv"]
