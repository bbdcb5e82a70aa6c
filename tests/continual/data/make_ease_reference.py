"""Regenerate ease_reference.json: the EASE reference's prototype synthesis and class scores on fixed inputs.

    git clone https://github.com/sun-hailong/CVPR24-Ease /tmp/ease && git -C /tmp/ease checkout 6d67508
    python tests/continual/data/make_ease_reference.py /tmp/ease

Reference: sun-hailong/CVPR24-Ease @ 6d67508ed8b7c4d23350ed4eb28c123914b40ae3. ``Learner.solve_sim_reset`` and
``Learner.get_cls_range`` (models/ease.py) are extracted from the source and run as written on a stand-in learner
(its ``fc.weight``, class counts, current task; ``use_init_ptm`` and ``moni_adam`` off, as the shipped configs);
``CosineLinear.forward_reweight`` (backbone/linears.py, which imports only torch) scores fixed features with the
synthesised weights (α = 0.1, β = 0, σ = 1). No reference code is part of transferlab.

Cases: 3 tasks of 3 classes and 4 tasks of 2 classes, subspaces of 5 and 4 dimensions; a class of task k has its own
(random) prototypes in subspaces 0..k and zeros elsewhere (what replace_fc leaves before the synthesis).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

CASES = [{"tasks": 3, "per": 3, "dim": 5, "seed": 0, "batch": 4}, {"tasks": 4, "per": 2, "dim": 4, "seed": 1,
                                                                   "batch": 3}]


def _learner_functions(root: Path) -> dict[str, object]:
    tree = ast.parse((root / "models" / "ease.py").read_text())
    learner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Learner")
    ns: dict[str, object] = {"torch": torch, "F": F, "np": np}
    for fn in learner.body:
        if isinstance(fn, ast.FunctionDef) and fn.name in ("solve_sim_reset", "get_cls_range"):
            exec(compile(ast.Module([fn], []), "ease.py", "exec"), ns)
    return ns


def _case(root: Path, c: dict[str, int]) -> dict[str, object]:
    t, per, d = c["tasks"], c["per"], c["dim"]
    rng = np.random.default_rng(c["seed"])
    w = np.zeros((t * per, t * d), dtype=np.float32)
    for k in range(t):  # task k's classes: real prototypes in subspaces 0..k
        w[k * per:(k + 1) * per, : (k + 1) * d] = rng.normal(size=(per, (k + 1) * d))
    fns = _learner_functions(root)
    fc = SimpleNamespace(weight=SimpleNamespace(data=torch.tensor(w)))
    me = SimpleNamespace(_network=SimpleNamespace(fc=fc, out_dim=d), init_cls=per, inc=per, _cur_task=t - 1,
                         _total_classes=t * per, use_init_ptm=False, moni_adam=False, adapter_num=-1,
                         _device="cpu")
    me.get_cls_range = lambda task_id: fns["get_cls_range"](me, task_id)
    fns["solve_sim_reset"](me)
    synthesised = fc.weight.data.clone()
    spec = importlib.util.spec_from_file_location("ease_linears", root / "backbone" / "linears.py")
    linears = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(linears)
    head = linears.CosineLinear(t * d, t * per)
    head.weight.data = synthesised.clone()
    x = torch.tensor(rng.normal(size=(c["batch"], t * d)), dtype=torch.float32)
    with torch.no_grad():
        logits = head.forward_reweight(x, cur_task=t - 1, alpha=0.1, beta=0.0, init_cls=per, inc=per, out_dim=d,
                                       use_init_ptm=False)["logits"]
    return {**c, "weight": w.tolist(), "synthesised": synthesised.tolist(), "features": x.tolist(),
            "logits": logits.tolist()}


if __name__ == "__main__":
    root = Path(sys.argv[1])
    out = {"reference": "sun-hailong/CVPR24-Ease @ 6d67508ed8b7c4d23350ed4eb28c123914b40ae3 (Learner.solve_sim_reset, "
                        "CosineLinear.forward_reweight)", "cases": [_case(root, c) for c in CASES]}
    (Path(__file__).parent / "ease_reference.json").write_text(json.dumps(out, indent=1) + "\n")
