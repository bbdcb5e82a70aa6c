"""Regenerate avalanche_reference.json: Avalanche's StreamBWT, StreamForgetting and StreamForwardTransfer plugin
metrics driven over fixed accuracy matrices.

    pip install --no-deps --target /tmp/aval avalanche-lib==0.6.0
    python tests/continual/data/make_avalanche_reference.py /tmp/aval

Reference: ContinualAI/avalanche 0.6.0 (PyPI), avalanche/evaluation/metrics/forgetting_bwt.py and
forward_transfer.py. Only the three metric modules (and the small modules they import) are loaded, bypassing the
package's heavy __init__; the accuracies come from the matrices (``metric_result`` is the one method replaced), so the
aggregation — which experiences count, first versus last value — is Avalanche's own. No Avalanche code is part of
transferlab.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

MATRICES = [
    {"r": [[0.9, 0.2, 0.1], [0.6, 0.8, 0.3], [0.7, 0.5, 0.95]], "b": [0.1, 0.15, 0.2]},
    {"r": [[0.5, 0.0], [0.8, 0.9]], "b": [0.0, 0.1]},
    {"r": [[0.99, 0.1, 0.2, 0.3], [0.5, 0.97, 0.25, 0.1], [0.4, 0.6, 0.95, 0.3], [0.3, 0.5, 0.7, 0.9]],
     "b": [0.25, 0.2, 0.3, 0.1]},
]


def _load(root: Path) -> dict[str, types.ModuleType]:
    ev = root / "avalanche" / "evaluation"
    for name, path in (("avalanche", root / "avalanche"), ("avalanche.evaluation", ev)):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]  # a namespace: submodules load from the files, the __init__ does not run
        sys.modules[name] = mod

    def load(name: str, file: Path) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    load("avalanche.evaluation.metric_results", ev / "metric_results.py")
    load("avalanche.evaluation.metric_utils", ev / "metric_utils.py")
    defs = load("avalanche.evaluation.metric_definitions", ev / "metric_definitions.py")
    sys.modules["avalanche.evaluation"].Metric = defs.Metric
    sys.modules["avalanche.evaluation"].PluginMetric = defs.PluginMetric
    metrics = types.ModuleType("avalanche.evaluation.metrics")
    metrics.__path__ = [str(ev / "metrics")]
    sys.modules["avalanche.evaluation.metrics"] = metrics
    metrics.Mean = load("avalanche.evaluation.metrics.mean", ev / "metrics" / "mean.py").Mean
    metrics.TaskAwareAccuracy = type("TaskAwareAccuracy", (), {"reset": lambda self: None})
    return {"bwt": load("avalanche.evaluation.metrics.forgetting_bwt", ev / "metrics" / "forgetting_bwt.py"),
            "fwt": load("avalanche.evaluation.metrics.forward_transfer", ev / "metrics" / "forward_transfer.py")}


class _Exp:
    def __init__(self, k: int) -> None:
        self.current_experience = k
        self.origin_stream = types.SimpleNamespace(name="test")
        self.task_labels = [0]


class _Strategy:
    def __init__(self) -> None:
        self.experience: _Exp | None = None
        self.clock = types.SimpleNamespace(train_iterations=0)
        self.is_training = False
        self.value = 0.0
        self.eval_every = 1
        self.is_eval = True


def _drive(metric_cls: type, r: list[list[float]], b: list[float]) -> float:
    class Driven(metric_cls):  # type: ignore[misc, valid-type]
        def metric_update(self, strategy):  # noqa: ANN001
            pass

        def metric_result(self, strategy):  # noqa: ANN001
            return strategy.value

    m, s = Driven(), _Strategy()
    t = len(r)

    def evaluate(values: list[float]) -> None:
        m.before_eval(s)
        for j in range(t):
            s.experience, s.value = _Exp(j), values[j]
            m.before_eval_exp(s)
            m.after_eval_iteration(s)
            m.after_eval_exp(s)
        m.after_eval(s)

    s.experience = _Exp(0)
    evaluate(b)  # before any training (forward transfer's initial values)
    for i in range(t):
        s.experience = _Exp(i)
        m.before_training_exp(s)
        evaluate(r[i])
    return float(m.result())


def main(root: str) -> None:
    mods = _load(Path(root))
    out = []
    for case in MATRICES:
        out.append({**case, "stream_bwt": _drive(mods["bwt"].StreamBWT, case["r"], case["b"]),
                    "stream_forgetting": _drive(mods["bwt"].StreamForgetting, case["r"], case["b"]),
                    "stream_forward_transfer": _drive(mods["fwt"].StreamForwardTransfer, case["r"], case["b"])})
    ref = {"reference": "ContinualAI/avalanche 0.6.0 (PyPI avalanche-lib), avalanche/evaluation/metrics/"
                        "forgetting_bwt.py (StreamBWT, StreamForgetting) and forward_transfer.py "
                        "(StreamForwardTransfer), driven over fixed matrices", "cases": out}
    (Path(__file__).parent / "avalanche_reference.json").write_text(json.dumps(ref, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
