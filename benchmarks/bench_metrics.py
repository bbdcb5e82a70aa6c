"""Benchmark: every transferability metric against its reference implementation, wall-clock time per call.

What it measures: on synthetic data the size of a real ranking job (default N=5000 examples, D=2048 feature
dimensions, C=100 classes; float64 ReLU features around class means, a 1000-class source head's probabilities for
LEEP/NCE), for each BLAS thread count T, the median wall-clock time of ``transferlab.rank.score(metric, ...)`` (a
fresh call: nothing shared between metrics) and of the reference function on the same arrays. NLEEP's Gaussian
mixture has 5 C components with full covariances: at the full size neither implementation finishes in reasonable
time, so it runs at ``--nleep-size`` (default 1000,64,10). TMI, kNN and the linear probe have no reference.

The references are NOT vendored: they run, unmodified, in a separate Python (``--ref-python``, a venv with numpy,
scipy, scikit-learn, numba, torch and tensorflow-cpu) from checkouts under ``--refs-dir``:
``LogME`` (thuml/LogME @ 56551ca), ``TLlib`` (thuml/Transfer-Learning-Library @ c4aa59e), ``SFDA`` (TencentARC/SFDA
@ 3b7edf7), ``ETran`` (mgholamikn/ETran @ d4551ed), ``PED`` (lixiaotong97/PED @ e5af6e7) and
``google-research/stable_transfer/transferability/{gbc,leep,nleep}.py`` (google-research, stored file versions).
The reference process imports each module once (not timed) and times ``--repeats`` calls under
``threadpoolctl.threadpool_limits(T)`` and ``torch.set_num_threads(T)``; ours runs the same way in this process.

Exact command (repository root, project venv), as recorded in docs/benchmarks.md:

    .venv/bin/python benchmarks/bench_metrics.py --refs-dir /work/refs --ref-python /work/refs/venv/bin/python

Add ``--metrics sfda,transrate`` for a subset, ``--json PATH`` to keep the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# metric -> (our score() options, reference call written against the reference process's namespace `R`)
REFERENCES = {
    "logme": ({}, "R.logme.LogME(regression=False).fit(f, y)"),
    "leep": ({}, "R.leep.LEEP(p, y)"),
    "nce": ({}, "R.nce.NCE(np.argmax(p, 1), y)"),
    "hscore": ({}, "R.tl_hscore.h_score(f, y)"),
    "hscore_shrinkage": ({}, "R.tl_hscore.regularized_h_score(f, y)"),
    "transrate": ({}, "R.tl_transrate.transrate(f, y)"),
    "sfda": ({}, "R.sfda.SFDA_Score(f.copy(), y)"),
    "gbc": ({"pca": None}, "R.gbc.get_gbc_score(f, y, 'spherical')"),
    "etran_energy": ({}, "R.etran.Energy_Score(f, 0.5, 'bot')"),
    "etran_lda": ({}, "R.etran.LDA_Score(f, y)"),
    "ped": ({"stats_from_features": True}, "R.ped.PED_Score(f.copy(), y, general_X=f.copy(), exit_ratio=0.5, "
            "time_step=0.1, type='SFDA', component_ratio=5, nsigma=0.6, constant=1.0)"),
    "nleep": ({"random_state": 0, "log": False}, "(np.random.seed(0), R.sfda.NLEEP(f.copy(), y, component_ratio=5))[1]"),
    "tmi": ({}, None),
    "knn": ({}, None),
    "linear_probe": ({}, None),
}

REF_RUNNER = r'''
import importlib.util, json, os, sys, time, types, contextlib, io, warnings
import numpy as np
warnings.filterwarnings("ignore")
refs, data, calls, threads, repeats = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
d = np.load(data); f, y, p = d["f"], d["y"], d["p"]

def load(name, path, extra_path=None):
    for k in ("utils", "metrics"):
        sys.modules.pop(k, None)
    if extra_path:
        sys.path.insert(0, extra_path)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        if extra_path:
            sys.path.remove(extra_path)

R = types.SimpleNamespace()
needed = " ".join(calls.values())
with contextlib.redirect_stdout(io.StringIO()):
    if "R.logme" in needed: R.logme = load("ref_logme", f"{refs}/LogME/LogME.py")
    if "R.leep" in needed: R.leep = load("ref_leep", f"{refs}/LogME/LEEP.py")
    if "R.nce" in needed: R.nce = load("ref_nce", f"{refs}/LogME/NCE.py")
    if "R.tl_hscore" in needed: R.tl_hscore = load("ref_hs", f"{refs}/TLlib/tllib/ranking/hscore.py")
    if "R.tl_transrate" in needed: R.tl_transrate = load("ref_tr", f"{refs}/TLlib/tllib/ranking/transrate.py")
    if "R.sfda" in needed: R.sfda = load("ref_sfda", f"{refs}/SFDA/metrics.py", f"{refs}/SFDA")
    if "R.etran" in needed: R.etran = load("ref_etran", f"{refs}/ETran/metrics.py", f"{refs}/ETran")
    if "R.ped" in needed: R.ped = load("ref_ped", f"{refs}/PED/metrics.py", f"{refs}/PED")
    if "R.gbc" in needed:
        stub = types.ModuleType("stable_transfer.transferability.transfer_experiment")
        stub.load_or_compute = lambda *a, **k: (lambda fn: fn)
        for name in ("stable_transfer", "stable_transfer.transferability"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules["stable_transfer.transferability.transfer_experiment"] = stub
        sys.modules["stable_transfer.transferability"].transfer_experiment = stub
        R.gbc = load("ref_gbc", f"{refs}/google-research/stable_transfer/transferability/gbc.py")
from threadpoolctl import threadpool_limits
try:
    import torch; torch.set_num_threads(threads)
except ImportError:
    pass
out = {}
with threadpool_limits(threads):
    for metric, call in calls.items():
        times, value = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                value = eval(call)
            times.append(time.perf_counter() - t0)
        out[metric] = {"seconds": times, "value": float(value)}
print(json.dumps(out))
'''


def make_data(n: int, d: int, c: int, seed: int, n_source: int = 1000) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % c).astype(np.int64)
    f = np.maximum(np.eye(c)[y] @ rng.standard_normal((c, d)) * 0.5 + rng.standard_normal((n, d)), 0.0)
    logits = rng.standard_normal((n, n_source)) + 3.0 * np.eye(n_source)[(y * 7) % n_source]
    p = np.exp(logits - logits.max(1, keepdims=True))
    return f, y, p / p.sum(1, keepdims=True)


def ours(metric: str, f: np.ndarray, y: np.ndarray, p: np.ndarray, threads: int, repeats: int) -> dict:
    import torch
    from threadpoolctl import threadpool_limits

    from transferlab.rank import score

    opts = dict(REFERENCES[metric][0])
    if opts.pop("stats_from_features", False):
        opts.update(source_mean=f.mean(0), source_std=f.std(0))
    torch.set_num_threads(threads)
    small = make_data(40, 6, 3, 1, n_source=8)  # untimed warm-up: lazy imports, as the reference's are at import
    score(metric, *small, **({"source_mean": small[0].mean(0), "source_std": small[0].std(0)}
                             if "source_mean" in opts else {}), **{k: v for k, v in opts.items()
                                                                  if k not in ("source_mean", "source_std")})
    times, value = [], None
    with threadpool_limits(threads):
        for _ in range(repeats):
            t0 = time.perf_counter()
            value = score(metric, f, y, p, **opts)
            times.append(time.perf_counter() - t0)
    return {"seconds": times, "value": float(value)}


def reference(args: argparse.Namespace, calls: dict[str, str], data: Path, threads: int) -> dict:
    if not calls:
        return {}
    cmd = [str(args.ref_python), "-c", REF_RUNNER, str(args.refs_dir), str(data), json.dumps(calls), str(threads),
           str(args.repeats)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"reference run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refs-dir", type=Path, default=Path("/work/refs"))
    ap.add_argument("--ref-python", type=Path, default=Path("/work/refs/venv/bin/python"))
    ap.add_argument("--metrics", default=",".join(REFERENCES))
    ap.add_argument("--size", default="5000,2048,100", help="N,D,C")
    ap.add_argument("--nleep-size", default="1000,64,10", help="N,D,C for NLEEP")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in REFERENCES]
    if unknown:
        ap.error(f"unknown metric(s) {unknown}; known: {', '.join(REFERENCES)}")
    sizes = {"main": tuple(int(v) for v in args.size.split(",")),
             "nleep": tuple(int(v) for v in args.nleep_size.split(","))}
    rows = []
    print("| metric | N, D, C | threads | transferlab (s) | reference (s) | speed-up | same score |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for group in ("main", "nleep"):
            chosen = [m for m in metrics if (m == "nleep") == (group == "nleep")]
            if not chosen:
                continue
            n, d, c = sizes[group]
            f, y, p = make_data(n, d, c, args.seed)
            data = Path(tmp) / f"{group}.npz"
            np.savez(data, f=f, y=y, p=p)
            for threads in [int(t) for t in args.threads.split(",")]:
                calls = {m: REFERENCES[m][1] for m in chosen if REFERENCES[m][1]}
                ref = reference(args, calls, data, threads)
                for m in chosen:
                    mine = ours(m, f, y, p, threads, args.repeats)
                    t_ours = statistics.median(mine["seconds"])
                    r = ref.get(m)
                    t_ref = statistics.median(r["seconds"]) if r else None
                    same = (None if r is None else
                            bool(np.isclose(mine["value"], r["value"], rtol=1e-4, atol=1e-6)))
                    rows.append({"metric": m, "n": n, "d": d, "c": c, "threads": threads, "ours": mine,
                                 "reference": r, "same_score": same})
                    print(f"| {m} | {n}, {d}, {c} | {threads} | {t_ours:.3f} | "
                          f"{'—' if t_ref is None else f'{t_ref:.3f}'} | "
                          f"{'—' if t_ref is None else f'{t_ref / t_ours:.1f}×'} | "
                          f"{'—' if same is None else ('yes' if same else 'NO: ' + repr((mine['value'], r['value'])))} |",
                          flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=2))


if __name__ == "__main__":
    main()
