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
                                         "continual naive", "merge regmean", "rank pipelined", "fit blackvip",
                                         "fit petal fp32", "fit sla fp32"]
    assert rc == 0 and all(r["ok"] and not r["off_device"] for r in rows)
    # on one device the same seed gives the same numbers: the comparison itself is exact here
    assert all(r["difference"] == 0 for r in rows)
    assert "| step | compared | device | CPU |" in capsys.readouterr().out


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_the_forward_spy_names_a_forward_on_another_device():
    import torch

    mod = _module()
    lin = torch.nn.Linear(3, 2)
    with mod.ForwardSpy(torch.device("cuda", 0)) as spy:  # expects the GPU; the forwards below run on the CPU
        lin(torch.zeros(1, 3))  # a one-example shape probe: allowed
        assert spy.off == []
        lin(torch.zeros(4, 3))
        lin(torch.zeros(5, 3))  # the same offender is named once
    assert spy.problems() == ["Linear forward on cpu", "no module forward ran on cuda:0"]
    lin(torch.zeros(4, 3))  # the hook is gone after the block
    assert spy.off == ["Linear forward on cpu"]
    with mod.ForwardSpy(torch.device("cpu")) as ok:
        lin({"x": torch.zeros(4, 3)}["x"])
    assert ok.problems() == [] and ok.on == 1


def test_a_step_that_leaves_a_forward_or_a_tensor_off_the_device_fails(tmp_path, capsys):
    """The device's run of a step puts a forward of 2 examples, then a parameter, on the meta device: both named,
    the row not ok (on the CPU: the device checked is the CPU)."""
    import argparse

    import torch

    mod = _module()
    check = mod.Check(argparse.Namespace(device="cpu", tiny=True, full=False, model="x"), tmp_path)
    lin = torch.nn.Linear(3, 2)

    def fn(device, tag):
        if tag.endswith("-device"):
            lin.to("meta")(torch.zeros(2, 3, device="meta"))
        return 0.5, lin

    mod.TOLERANCES["fake"] = ("x", 0.0)
    try:
        check.run("fake", fn, spy=True)
    finally:
        del mod.TOLERANCES["fake"]
    row = check.rows[0]
    assert not row["ok"] and row["off_device"] == ["model.weight on meta", "model.bias on meta",
                                                   "Linear forward on meta"]
    assert "fake: FAILED" in capsys.readouterr().out
