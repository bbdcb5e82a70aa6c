"""Benchmark: transferlab's merge against mergekit's on the same checkpoints, where both do the same merge.

Setup (built once in ``--workdir``, reused while it is there): a Llama decoder (transformers ``LlamaForCausalLM``,
mergekit's home architecture; random init, seeded; ``--layers`` 12, hidden size 768, MLP 2048, vocabulary 32,000 by
default: 134M parameters) saved with ``save_pretrained`` as Hugging Face folders: a base and ``--models`` 3
"fine-tuned" ones (base + seeded gaussian noise, 1e-3 x each tensor's std), float32 safetensors. mergekit 0.1.5
fails on optional weights with aliases (Llama's ``lm_head``, every BERT definition): ``plan_tensor`` adds a list and a
tuple (TypeError); the mergekit job converts those aliases to a list before planning (planning only, not timed
work).

The merges, each the same computation in both tools (docs/merge.md, "Options compared with mergekit"):

- ``average``: mergekit ``linear`` with equal weights (the mean of the models);
- ``task_arithmetic`` (``lam`` 0.3): mergekit ``task_arithmetic`` with ``weight: 0.3`` on every model;
- ``ties`` (``density`` 0.2, per tensor: transferlab's ``scope: tensor``, ``lam`` 1): mergekit ``ties``, ``density:
  0.2``, ``weight: 1`` (its default ``normalize: true``); the kept count at the threshold and zero-sum signs can differ
  on a few entries (docs/merge.md).

Each merge runs in its own subprocess (mergekit in ``--mergekit-python``, a scratch venv: never a dependency of
transferlab), after a warm-up read of every file (page cache warm for both); only the merge after the imports
(torch, safetensors and transformers included: mergekit imports them with itself) is timed (transferlab: ``merge_models``, which also writes heads, card, recipe, report; mergekit: ``run_merge`` with
``copy_tokenizer`` off, no CUDA). The two outputs are compared tensor by tensor (largest absolute difference). Medians
over ``--repeats``; the load average is recorded (2-core machine, shared); each process's peak RSS
(``ru_maxrss``: imports and touched pages of mapped files included), the largest over the repeats. Both run with
compiled bytecode cached under ``--workdir`` (``bytecode_env``).

Exact command (repository root, project venv; mergekit installed with ``python3.11 -m venv /tmp/mk-venv &&
/tmp/mk-venv/bin/pip install torch==2.14.1 mergekit``):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_merge_mergekit.py --json merge_mergekit.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MERGES = {
    "average": ({}, {"merge_method": "linear", "weight": 1.0}),
    "task_arithmetic": ({"lam": 0.3}, {"merge_method": "task_arithmetic", "weight": 0.3}),
    "ties": ({"density": 0.2, "lam": 1.0, "scope": "tensor"}, {"merge_method": "ties", "weight": 1.0,
                                                              "density": 0.2}),
}


def build(work: Path, layers: int, hidden: int, n_models: int) -> dict[str, Any]:
    meta_path = work / "meta.json"
    want = {"layers": layers, "hidden": hidden, "models": n_models}
    if meta_path.is_file() and all(json.loads(meta_path.read_text()).get(k) == v for k, v in want.items()):
        return json.loads(meta_path.read_text())
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    torch.manual_seed(0)
    heads = max(1, hidden // 64)
    cfg = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads, intermediate_size=(8 * hidden) // 3 // 64 * 64, vocab_size=32000)
    net = LlamaForCausalLM(cfg)
    net.save_pretrained(str(work / "base"), safe_serialization=True)
    base = {k: v.detach().clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    for i in range(n_models):
        sd = {}
        for k, v in base.items():
            if not v.is_floating_point():
                sd[k] = v
                continue
            std = v.std().item() if v.numel() > 1 else v.abs().item()
            sd[k] = v + torch.randn(v.shape, generator=g) * (1e-3 * (std or 1.0))
        net.load_state_dict(sd)
        net.save_pretrained(str(work / f"ft{i + 1}"), safe_serialization=True)
    meta = {**want, "params": sum(v.numel() for v in base.values()),
            "file_mb": (work / "base" / "model.safetensors").stat().st_size / 2**20}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


OURS = """
import json, sys, time
import safetensors.torch, torch, transformers  # before the timer, as mergekit's own import brings them in before its
# timer (transformers >= 4.5x imports lazily: without torch here, its import time, 1-4 s, fell inside our timer)
from transferlab.merge import merge_models
work, name, opts, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
n = int(sys.argv[5])
t = time.perf_counter()
merge_models(name, work + "/base", [f"{work}/ft{i + 1}" for i in range(n)], out, overwrite=True, **opts)
seconds = time.perf_counter() - t
import resource
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

THEIRS = """
import json, sys, time, yaml
from importlib.metadata import version
from mergekit.config import MergeConfiguration
from mergekit.merge import MergeOptions, run_merge
work, spec, out, n = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
params = {k: v for k, v in spec.items() if k != "merge_method"}
doc = {"merge_method": spec["merge_method"], "dtype": "float32",
       "models": [{"model": f"{work}/ft{i + 1}", "parameters": params} for i in range(n)]}
if spec["merge_method"] != "linear":
    doc["base_model"] = work + "/base"
cfg = MergeConfiguration.model_validate(doc)
from mergekit import plan  # mergekit 0.1.5: plan_tensor adds a list and a tuple of aliases (optional weights)
_plan_tensor = plan.MergePlanner.plan_tensor
def plan_tensor(self, weight, weights_in, *rest, **kw):
    fixed = [w.model_copy(update={"aliases": list(w.aliases)}) if w.aliases else w for w in weights_in]
    return _plan_tensor(self, weight, fixed, *rest, **kw)
plan.MergePlanner.plan_tensor = plan_tensor
t = time.perf_counter()
run_merge(cfg, out, options=MergeOptions(cuda=False, copy_tokenizer=False))
seconds = time.perf_counter() - t
import resource
print(json.dumps({"seconds": seconds, "version": version("mergekit"),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bytecode_env(work: Path) -> dict[str, str]:
    """The environment both tools run in: compiled bytecode cached under ``work`` (an installed package has its
    ``.pyc`` files; with ``PYTHONDONTWRITEBYTECODE`` set, as on the project's machine, every module transferlab
    imports lazily inside the timed merge was compiled from source each run, about 0.2 s)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONPYCACHEPREFIX": str(work / "pycache")}


def run(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"{cmd[0]} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def compare(a: Path, b: Path) -> float:
    """The largest absolute difference between the tensors the two merged folders share (names as in the base)."""
    from safetensors.torch import load_file

    def tensors(d: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in sorted(d.glob("*.safetensors")):
            out.update(load_file(str(f)))
        return out

    ta, tb = tensors(a), tensors(b)
    common = [k for k in ta if k in tb and ta[k].is_floating_point()]
    if not common:
        raise SystemExit(f"no common tensor between {a} and {b}")
    return max(float((ta[k].float() - tb[k].float()).abs().max()) for k in common)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/tmp/bench_merge_mergekit")
    ap.add_argument("--mergekit-python", default="/tmp/mk-venv/bin/python")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--merges", default=",".join(MERGES))
    ap.add_argument("--json")
    a = ap.parse_args()
    work = Path(a.workdir)
    meta = build(work, a.layers, a.hidden, a.models)
    for f in work.rglob("*.safetensors"):  # the page cache warm for both tools
        f.read_bytes()
    env = bytecode_env(work)
    import importlib.util

    package = importlib.util.find_spec("transferlab").submodule_search_locations[0]  # found, not imported
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], env=env, check=True, capture_output=True)
    rows, load_start = [], os.getloadavg()
    for name in a.merges.split(","):
        ours_opts, spec = MERGES[name]
        t_ours, t_theirs, rss, version = [], [], [0.0, 0.0], None
        for _ in range(a.repeats):  # alternated, so both see the same load
            r = run([sys.executable, "-c", OURS, str(work), name, json.dumps(ours_opts),
                     str(work / f"out_ours_{name}"), str(a.models)], env)
            t_ours.append(r["seconds"])
            rss[0] = max(rss[0], r["rss_mb"])
            r = run([a.mergekit_python, "-c", THEIRS, str(work), json.dumps(spec), str(work / f"out_mk_{name}"),
                     str(a.models)], env)
            t_theirs.append(r["seconds"])
            rss[1] = max(rss[1], r["rss_mb"])
            version = r["version"]
        diff = compare(work / f"out_ours_{name}", work / f"out_mk_{name}")
        row = {"merge": name, "transferlab_s": statistics.median(t_ours), "mergekit_s": statistics.median(t_theirs),
               "all_transferlab_s": t_ours, "all_mergekit_s": t_theirs, "max_abs_diff": diff,
               "transferlab_peak_rss_mb": rss[0], "mergekit_peak_rss_mb": rss[1],
               "mergekit_version": version}
        row["ratio"] = row["transferlab_s"] / row["mergekit_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"meta": meta, "rows": rows, "loadavg_start": load_start, "loadavg": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M"),
              "repeats": a.repeats}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
