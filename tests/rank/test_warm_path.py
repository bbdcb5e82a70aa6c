"""What a warm rerun pays: no torch, no scipy (stats, linalg), no bench harness; the two stand-ins for scipy that
keep it so (the consensus' ranks, the expected accuracy's Wilson interval) equal scipy's own results."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import binomtest, rankdata

from transferlab.rank import rank
from transferlab.rank._consensus import metric_ranks
from transferlab.rank._result import wilson_interval


def test_metric_ranks_equal_scipy_rankdata_min_with_ties_and_gaps():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = [None if rng.random() < 0.2 else float(rng.integers(0, 5)) for _ in range(int(rng.integers(1, 12)))]
        idx = [i for i, s in enumerate(scores) if s is not None]
        want = rankdata([-scores[i] for i in idx], method="min") if idx else []
        got = metric_ranks(scores)
        assert [got[i] for i in idx] == [int(r) for r in want]
        assert all(got[i] is None for i, s in enumerate(scores) if s is None)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (1733, 2000), (1, 2000), (50, 51)])
def test_wilson_interval_equals_scipys(k, n):
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-15)


def test_a_warm_cli_rerun_imports_no_torch_scipy_or_bench(tmp_path):
    cache = tmp_path / "cache"
    rank("builtin:fashion-mnist", ["builtin:pixels"], "logme,linear_probe", limit=100, cache_dir=cache)  # cold, here
    code = ("import sys; from transferlab.cli import main; sys.argv = ['transferlab'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'scipy.stats', 'scipy.linalg', 'transferlab.bench') if m in sys.modules))")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", code, "rank", "builtin:fashion-mnist", "--zoo", "builtin:pixels", "--metrics",
                           "logme,linear_probe", "--limit", "100", "--out", str(out), "--quiet"],
                          env={**os.environ, "TRANSFERLAB_CACHE": str(cache)}, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    result = json.loads((out / "ranking.json").read_text())
    assert result["cache"]["state"] == "warm" and result["expected_accuracy"]["n"] == 100
