"""benchmarks/gpu_check.py runs in the suite, shrunk and on the CPU, so the script a GPU machine will run does not rot
(issue 28): every step runs twice (the device, then the CPU reference), the table has a row per step, all ok."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu_in_its_shrunk_form(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    rc = mod.main(["--device", "cpu", "--tiny", "--json", str(tmp_path / "rows.json")])
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["step"] for r in rows] == ["rank fp32", "fit finetune", "fit lora", "domain dann", "distill kd",
                                         "continual naive", "merge regmean"]
    assert rc == 0 and all(r["ok"] and not r["off_device"] for r in rows)
    # on one device the same seed gives the same numbers: the comparison itself is exact here
    assert all(r["difference"] == 0 for r in rows)
    assert "| step | compared | device | CPU |" in capsys.readouterr().out
