"""Benchmark: transferlab's LogME against the reference implementation (thuml/LogME), wall-clock time and agreement.

What it measures: for each BLAS thread count T, the median wall-clock time (``time.perf_counter``) of
``transferlab.rank.score("logme", F, y)`` and of the reference ``LogME(regression=False).fit(F, y)`` (its default
fixed-point ``_fit``) on the same synthetic data: float32 features F [N, D] (ReLU of class means + Gaussian noise,
non-negative like pooled CNN/ViT features), balanced int64 labels y in 0..C-1. The two are called alternately,
``--repeats`` times each, after one untimed warm-up call of each, under ``threadpoolctl.threadpool_limits(T)``
(and ``torch.set_num_threads(T)`` if torch got imported). It also checks that the two scores agree
(relative difference < 1e-4; exits with status 1 otherwise).

Exact command (from the repository root, with the project venv):

    .venv/bin/python benchmarks/bench_logme.py --reference-dir /work/refs/LogME

(defaults: --n 5000 --d 2048 --c 100 --threads 1,2 --repeats 3 --seed 0; add --json out.json to save results).

The reference is NOT vendored in this repository: fetch github thuml/LogME at commit
56551ca94a3295bcc37e6a01b1291911af985f07 and pass its directory with --reference-dir; its ``LogME.py`` is
imported from there at run time. It needs ``numba`` (``pip install numba``); its njit functions are compiled when
the module is imported, which is timed and reported separately ("numba compile").

OPENBLAS_* environment variables (e.g. OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) are left as they are: both
implementations run in the same process under the same BLAS, and the header prints them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

REF_COMMIT = "56551ca94a3295bcc37e6a01b1291911af985f07"
REL_TOL = 1e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-dir", type=Path, default=Path("/work/refs/LogME"),
                   help="checkout of github thuml/LogME at commit 56551ca (the directory holding LogME.py)")
    p.add_argument("--n", type=int, default=5000, help="number of examples N")
    p.add_argument("--d", type=int, default=2048, help="feature dimension D")
    p.add_argument("--c", type=int, default=100, help="number of classes C")
    p.add_argument("--threads", type=str, default="1,2", help="comma-separated BLAS thread counts, e.g. 1,2,4")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each implementation per thread count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    if not args.threads or min(args.threads) < 1:
        p.error("--threads must be a comma-separated list of positive integers")
    if args.repeats < 1 or args.c < 2 or args.n < args.c or args.d < 1:
        p.error("need --repeats >= 1, --c >= 2, --n >= --c, --d >= 1")
    return args


def load_reference(ref_dir: Path):
    """Import LogME.py from the reference checkout; return (LogME class, import seconds incl. numba compile)."""
    path = ref_dir / "LogME.py"
    if not path.is_file():
        sys.exit(f"error: reference LogME not found at {path}.\n"
                 f"Fetch github thuml/LogME at commit 56551ca ({REF_COMMIT}) and pass its directory with "
                 f"--reference-dir DIR (the reference is not vendored in this repository).")
    try:
        import numba  # noqa: F401
    except ImportError:
        sys.exit("error: the reference LogME needs numba: pip install numba")
    spec = importlib.util.spec_from_file_location("_reference_logme", path)
    mod = importlib.util.module_from_spec(spec)
    t0 = time.perf_counter()
    spec.loader.exec_module(mod)  # compiles each_evidence and truncated_svd (njit) on pseudo data
    return mod.LogME, time.perf_counter() - t0


def make_data(n: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels; non-negative (ReLU) features around per-class means, float32 like extracted features."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % c).astype(np.int64)
    means = rng.standard_normal((c, d))
    onehot = np.eye(c)[y]
    f = onehot @ means * 0.5 + rng.standard_normal((n, d))
    return np.maximum(f, 0.0).astype(np.float32), y


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_summary() -> list[str]:
    return [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('threading_layer')}, "
            f"max {i.get('num_threads')} threads) {Path(i.get('filepath', '')).name}"
            for i in threadpool_info()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ref_cls, compile_s = load_reference(args.reference_dir)
    from transferlab.rank import score

    f, y = make_data(args.n, args.d, args.c, args.seed)
    import numba
    import scipy.linalg  # noqa: F401  (ours uses scipy's LAPACK: load it so that its BLAS is listed in the header)
    print("LogME benchmark: transferlab.rank.score('logme') vs thuml/LogME LogME(regression=False).fit")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
          f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}")
    for line in blas_summary():
        print(f"BLAS: {line}")
    env = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update({k: v for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))})
    print("env: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"reference: {args.reference_dir} (thuml/LogME @ {REF_COMMIT[:7]}), numba compile at import: "
          f"{compile_s:.2f} s")
    print(f"data: N={args.n} D={args.d} C={args.c} float32 ReLU features, balanced labels, seed {args.seed}; "
          f"repeats {args.repeats} (+1 warm-up each)")

    torch = sys.modules.get("torch")
    label = f"LogME, N={args.n} D={args.d} C={args.c}"
    results, failed = [], False
    for t in args.threads:
        with threadpool_limits(limits=t):
            if torch is not None:
                prev_torch = torch.get_num_threads()
                torch.set_num_threads(t)
            t0 = time.perf_counter()
            ours_score = score("logme", f, y)
            warm_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref_score = float(ref_cls(regression=False).fit(f, y))
            warm_ref = time.perf_counter() - t0
            ours_t, ref_t = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                s = score("logme", f, y)
                ours_t.append(time.perf_counter() - t0)
                assert s == ours_score, "our LogME is not deterministic"
                t0 = time.perf_counter()
                ref_cls(regression=False).fit(f, y)
                ref_t.append(time.perf_counter() - t0)
            if torch is not None:
                torch.set_num_threads(prev_torch)
        rel = abs(ours_score - ref_score) / max(abs(ref_score), 1e-300)
        failed |= not rel < REL_TOL
        results.append(dict(threads=t, ours_s=statistics.median(ours_t), ref_s=statistics.median(ref_t),
                            ours_all_s=ours_t, ref_all_s=ref_t, warmup_ours_s=warm_ours, warmup_ref_s=warm_ref,
                            ours_score=ours_score, ref_score=ref_score, rel_diff=rel))

    print()
    print(f"{'threads':>7} {'ours [s]':>9} {'ref [s]':>9} {'ref/ours':>8} {'ours score':>14} {'ref score':>14} "
          f"{'rel diff':>9}")
    for r in results:
        print(f"{r['threads']:>7} {r['ours_s']:>9.3f} {r['ref_s']:>9.3f} {r['ref_s'] / r['ours_s']:>7.1f}x "
              f"{r['ours_score']:>14.8f} {r['ref_score']:>14.8f} {r['rel_diff']:>9.1e}")
    print("\nmarkdown:")
    for r in results:
        print(f"| {label}, {r['threads']} threads | ours {r['ours_s']:.2f} s | "
              f"reference {r['ref_s']:.2f} s | {r['ref_s'] / r['ours_s']:.1f}× | {r['rel_diff']:.1e} |")

    if args.json is not None:
        args.json.write_text(json.dumps(dict(
            n=args.n, d=args.d, c=args.c, seed=args.seed, repeats=args.repeats, reference_commit=REF_COMMIT,
            numba_compile_s=compile_s, cpu=cpu_model(), nproc=len(os.sched_getaffinity(0)), blas=threadpool_info(),
            env=env, results=results), indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if failed:
        print(f"\nFAIL: scores differ by more than {REL_TOL:g} (relative)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
