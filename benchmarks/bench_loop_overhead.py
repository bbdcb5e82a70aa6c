"""Benchmark: LoRA fit step time of two versions of transferlab (before/after a training-loop change), in one run.

Goal: the refactored training loop's time per optimizer step stays within ``--goal`` (2 %) of the old loop's.

Each version is a source tree: a git ref (checked out with ``git worktree add --detach`` into a temporary directory,
removed at the end, also on error or SIGTERM) or ``worktree`` (this checkout's ``src/`` as it is). Every measurement
is a fresh child process with ``PYTHONPATH`` = that version's ``src`` (the child asserts it imported transferlab from
there), ``HF_HUB_OFFLINE=1``, ``--threads`` torch/OMP/MKL threads and no bytecode written. A child runs the public
API both versions share, ``transferlab.fit.fit(train, "builtin:efficientnet_lite0", "lora", epochs=1,
val_fraction=0, batch_size=.., image_size=.., seed=0)``, on a stratified sample of ``--steps x --batch-size`` builtin
Fashion-MNIST training images (no validation, no test set): one warm-up fit, then ``--repeats`` timed fits. Two
times per fit:

* ``loop``: ``metrics["train_seconds"] / steps`` -- the whole adaptation (LoRA wrapping, optimizer, schedule, data
  loader set-up and all steps) per step; the goal is judged on this one.
* ``steady``: the median interval between consecutive optimizer steps (a global ``torch.optim`` step hook, so no
  change to either version), i.e. the per-step cost without the set-up.

Also shown: ``cpu``, the median process CPU time (all threads) between consecutive optimizer steps. Other processes
on the machine inflate wall time much more than CPU time, so on a shared machine it is the steadier signal (with
``--threads 1`` the steadiest: no thread waits on another).

Children alternate, before/after then after/before (ABBA), ``--rounds`` times, so drifting machine load hits both.
Reported per version: the median over all timed fits and its min..max; the ratio after/before as the median of the
per-round ratios (each round: the ratio of the two children's medians; range over rounds) and as the ratio of the
medians; the ratio of the fastest fits (other load only ever adds time, so on a busy machine this is the steadier
estimate); PASS/FAIL against ``1 + goal``, flagged when the goal lies inside the per-round range (noise as large as
the effect); and a markdown row for docs/benchmarks.md. Fits that ran while the 1-minute load average exceeded
``--threads`` + 1 (other processes competing for the cores) are marked ``*``.

Exact commands (repository root, project venv). First the sanity check of the method (the same commit on both sides
must give about 1.00; it shows the noise level), then the comparison:

    .venv/bin/python benchmarks/bench_loop_overhead.py --before 1bf8ea6 --after 1bf8ea6
    .venv/bin/python benchmarks/bench_loop_overhead.py --before 1bf8ea6 --after worktree

Defaults: 20 steps of 32 images at 128 px, 3 timed fits per child, 3 rounds, 2 threads: 6 children, about 6 to 7
minutes on an otherwise idle 2-core machine (much longer while other jobs run). ``--json PATH`` keeps every
measurement.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKTREE = "worktree"
MARK = "BENCH_JSON "


# ----------------------------------------------------------------------------------------------------- child side


def child(args: argparse.Namespace) -> None:
    """One process: import transferlab from ``args.child``, one warm-up fit, ``--repeats`` timed fits; JSON out."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    torch.set_num_threads(args.threads)
    src = Path(args.child).resolve()
    import transferlab
    from transferlab import load_dataset
    from transferlab.fit import fit

    where = Path(transferlab.__file__).resolve()
    assert where.is_relative_to(src), f"transferlab imported from {where}, not from {src}"
    fit_module = Path(sys.modules[fit.__module__].__file__).resolve()
    assert fit_module.is_relative_to(src), f"fit imported from {fit_module}, not from {src}"

    stamps: list[tuple[float, float]] = []  # (wall, process CPU) after each optimizer step
    register_optimizer_step_post_hook(lambda *_: stamps.append((time.perf_counter(), time.process_time())))
    n = args.steps * args.batch_size
    data = load_dataset("builtin:fashion-mnist", "train").stratified_sample(n, seed=0)
    assert len(data) == n, f"asked for {n} training images, got {len(data)} (at most 2,000: --steps x --batch-size)"

    def one() -> dict[str, float]:
        stamps.clear()
        load0 = os.getloadavg()[0]
        r = fit(data, args.model, args.method, epochs=1, batch_size=args.batch_size, image_size=args.image_size,
                val_fraction=0, seed=0)
        gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(stamps)]
        return {"loop": r.metrics["train_seconds"] / args.steps,
                "steady": statistics.median(g[0] for g in gaps) if gaps else float("nan"),
                "cpu": statistics.median(g[1] for g in gaps) if gaps else float("nan"), "optimizer_steps": len(stamps),
                "train_seconds": r.metrics["train_seconds"], "load": max(load0, os.getloadavg()[0])}

    warm = one()
    fits = [one() for _ in range(args.repeats)]
    print(MARK + json.dumps({"src": str(src), "imported": str(where), "torch_threads": torch.get_num_threads(),
                             "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
                             "warmup": warm, "fits": fits}), flush=True)


# ---------------------------------------------------------------------------------------------------- parent side


def git(*argv: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *argv], check=True, capture_output=True, text=True).stdout.strip()


def resolve(ref: str, tmp: Path, name: str, made: list[Path]) -> tuple[Path, str]:
    """(src directory, label) of a version: this checkout's src, or a fresh detached worktree of ``ref``."""
    if ref == WORKTREE:
        dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "src") else ""
        return REPO / "src", f"working tree ({git('rev-parse', '--short', 'HEAD')}{dirty})"
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = tmp / name
    git("worktree", "add", "--detach", str(path), sha)
    made.append(path)
    return path / "src", sha[:7] if sha.startswith(ref) else f"{ref} ({sha[:7]})"


def run_child(src: Path, args: argparse.Namespace, cache: Path) -> dict:
    t = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "PYTHONDONTWRITEBYTECODE": "1",
           "TRANSFERLAB_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(src), "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--image-size", str(args.image_size), "--repeats", str(args.repeats),
           "--threads", t, "--model", args.model, "--method", args.method]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    if p.returncode or not lines:
        sys.exit(f"child for {src} failed (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):]) | {"child_seconds": time.perf_counter() - t0}


def ms(v: float) -> str:
    return f"{v * 1000:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="1bf8ea6", help="git ref of the old version, or 'worktree' (default 1bf8ea6)")
    ap.add_argument("--after", default=WORKTREE, help="git ref of the new version, or 'worktree' (default: this "
                    "checkout's src/ as it is, uncommitted changes included)")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per fit (one epoch)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="timed fits per child, after one warm-up fit")
    ap.add_argument("--rounds", type=int, default=3, help="before/after child pairs, order alternating")
    ap.add_argument("--threads", type=int, default=2, help="torch / OMP / MKL threads in each child")
    ap.add_argument("--goal", type=float, default=0.02, help="allowed slow-down of after against before")
    ap.add_argument("--model", default="builtin:efficientnet_lite0")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--json", type=Path, default=None, help="write every measurement here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.steps < 2 or args.repeats < 1 or args.rounds < 1:
        ap.error("need --steps >= 2, --repeats >= 1, --rounds >= 1")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # so the worktrees are still removed
    t_start = time.perf_counter()
    busy = args.threads + 1
    made: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="bench_loop_overhead_") as tmp_s:
        tmp = Path(tmp_s)
        try:
            src_b, label_b = resolve(args.before, tmp, "before", made)
            src_a, label_a = resolve(args.after, tmp, "after", made)
            sides = {"before": src_b, "after": src_a}
            rounds = []
            for i in range(args.rounds):
                order = ("before", "after") if i % 2 == 0 else ("after", "before")
                res = {}
                for side in order:
                    r = res[side] = run_child(sides[side], args, tmp / "cache")
                    mark = ["*" if f["load"] > busy else "" for f in r["fits"]]
                    print(f"round {i + 1}/{args.rounds} {side:6}: loop "
                          f"{' '.join(ms(f['loop']) + m for f, m in zip(r['fits'], mark, strict=True))} ms/step, steady "
                          f"{' '.join(ms(f['steady']) + m for f, m in zip(r['fits'], mark, strict=True))}, cpu "
                          f"{' '.join(ms(f['cpu']) + m for f, m in zip(r['fits'], mark, strict=True))} ms/step "
                          f"(optimizer steps {r['fits'][0]['optimizer_steps']}, warm-up {ms(r['warmup']['loop'])}, "
                          f"child {r['child_seconds']:.0f} s)", flush=True)
                rounds.append(res)
        finally:
            failed = [p for p in made if subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                                         str(p)], capture_output=True).returncode]
            if failed:  # its directory went away first: drop git's record of it
                subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True)
    wall = time.perf_counter() - t_start

    def per_round(side: str, key: str) -> list[float]:
        return [statistics.median(f[key] for f in r[side]["fits"]) for r in rounds]

    def pooled(side: str, key: str) -> list[float]:
        return [f[key] for r in rounds for f in r[side]["fits"]]

    busy_fits = sum(f["load"] > busy for side in ("before", "after") for r in rounds for f in r[side]["fits"])
    print()
    print(f"{args.model}, {args.method}, batch {args.batch_size}, {args.image_size} px, {args.steps} steps/fit, "
          f"{args.repeats} timed fits/child (+1 warm-up), {args.rounds} rounds ABBA, "
          f"{rounds[0]['before']['torch_threads']} threads, {rounds[0]['before']['device']}")
    print(f"before: {label_b}  [{src_b}]")
    print(f"after:  {label_a}  [{src_a}]")
    print()
    print("| ms per step | before: median (min..max) | after: median (min..max) | after/before: median of rounds "
          "(min..max) | ratio of medians | ratio of fastest |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for key, what in (("loop", "loop (train_seconds / steps)"), ("steady", "steady (step to step)"),
                      ("cpu", "cpu (process CPU, step to step)")):
        b, a = pooled("before", key), pooled("after", key)
        ratios = [x / y for x, y in zip(per_round("after", key), per_round("before", key), strict=True)]
        mb, ma, mr = statistics.median(b), statistics.median(a), statistics.median(ratios)
        summary[key] = {"before": mb, "after": ma, "ratio": mr, "ratio_min": min(ratios), "ratio_max": max(ratios),
                        "ratio_of_medians": ma / mb, "ratio_of_fastest": min(a) / min(b), "round_ratios": ratios}
        print(f"| {what} | {ms(mb)} ({ms(min(b))}..{ms(max(b))}) | {ms(ma)} ({ms(min(a))}..{ms(max(a))}) | "
              f"{mr:.3f} ({min(ratios):.3f}..{max(ratios):.3f}) | {ma / mb:.3f} | {min(a) / min(b):.3f} |")
    s = summary["loop"]
    limit = 1 + args.goal
    ok = s["ratio"] <= limit
    noisy = s["ratio_min"] <= limit < s["ratio_max"]
    spread = (max(pooled("before", "loop")) - min(pooled("before", "loop"))) / min(pooled("before", "loop"))
    print()
    print(f"goal after/before <= {limit:.2f} (loop, median of rounds): {'PASS' if ok else 'FAIL'} at {s['ratio']:.3f}"
          + (f"; the per-round ratios span {s['ratio_min']:.3f}..{s['ratio_max']:.3f}, across the goal: noise as "
             "large as the effect, rerun with more --rounds on a quieter machine" if noisy else ""))
    c = summary["cpu"]
    print(f"cpu time per step (less sensitive to other load; {args.threads} threads' CPU summed): after/before "
          f"{c['ratio']:.3f} ({c['ratio_min']:.3f}..{c['ratio_max']:.3f}): {'PASS' if c['ratio'] <= limit else 'FAIL'}")
    print(f"noise: before's timed fits spread {spread * 100:.1f} % above their fastest; per-round ratios span "
          f"{(s['ratio_max'] - s['ratio_min']) * 100:.1f} points; {busy_fits} of {2 * len(pooled('before', 'loop'))} "
          f"timed fits ran with load average > {busy} (*)")
    print(f"wall time {wall / 60:.1f} min")
    command = " ".join([".venv/bin/python benchmarks/bench_loop_overhead.py", shlex.join(sys.argv[1:])]).strip()
    print()
    print("markdown row for docs/benchmarks.md:")
    print("| command | before | after | after/before: median of rounds (range); of medians; of fastest | goal |")
    print("|---|---|---|---|---|")
    print(f"| `{command}` | {label_b}: {ms(s['before'])} ms/step | {label_a}: {ms(s['after'])} ms/step | "
          f"{s['ratio']:.3f} ({s['ratio_min']:.3f}..{s['ratio_max']:.3f}); {s['ratio_of_medians']:.3f}; "
          f"{s['ratio_of_fastest']:.3f} | <= {limit:.2f}: {'met' if ok else 'not met'}"
          f"{' (within noise)' if noisy else ''} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in
                                                  vars(args).items()}, "before": label_b, "after": label_a,
                                         "rounds": rounds, "summary": summary, "wall_seconds": wall}, indent=2))


if __name__ == "__main__":
    main()
