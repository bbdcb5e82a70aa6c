"""Benchmark: step time of transferlab's LoRA (method + training loop) against bare peft on the same model and batch,
and of the current training loop against an earlier commit's (``--before REF``), in one run.

All sides: EfficientNet-Lite0 (built-in ImageNet weights), LoRA r=8 on the same target modules, AdamW, batch 32 at
``--image-size``, on the same fixed tensors (no data loading on any side). Bare peft: ``get_peft_model`` and a
minimal loop (forward, cross-entropy, backward, step). transferlab: ``fit``'s LoRA method and
``transferlab.train.train`` on a TensorDataset of the same tensors (warm-up + cosine schedule, gradient clipping,
progress accounting included). With ``--before REF`` the transferlab side also runs, in child processes alternating
with the working tree's, from a temporary ``git worktree`` of REF (each child warms up first, then times
``--repeats`` runs). Reported: median seconds per optimizer step over ``--steps`` steps, and the ratios.

Exact commands (repository root, project venv):

    .venv/bin/python benchmarks/bench_lora_overhead.py --image-size 128 --steps 20 --repeats 3
    .venv/bin/python benchmarks/bench_lora_overhead.py --image-size 128 --steps 20 --repeats 3 --before 1bf8ea6 --rounds 5
    .venv/bin/python benchmarks/bench_lora_overhead.py --tiny --steps 500 --repeats 5 --before 1bf8ea6 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build():
    from transferlab.zoo import resolve_model

    m = resolve_model("builtin:efficientnet_lite0").model
    m.reset_classifier(10)
    return m


def bare_peft_steps(x, y, steps):
    from peft import LoraConfig, get_peft_model

    from transferlab.fit._peft import _targets

    model = build()
    targets, head = _targets(model, None)
    pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, modules_to_save=[head]))
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
    pm.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(pm(x), y)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps


def transferlab_steps(x, y, steps):
    import transferlab.train as tt
    from transferlab.fit._peft import lora

    prep = lora(build(), r=8)
    data = torch.utils.data.TensorDataset(x.repeat(steps, 1, 1, 1), y.repeat(steps))
    cfg = tt.TrainConfig(epochs=1, lr=1e-3, batch_size=len(y), amp=False)
    t = time.perf_counter()
    if hasattr(tt, "Objective"):  # the objective-driven loop
        objective = tt.Supervised(params=prep.params, terms=[prep.regularizer])
        tt.train({"model": prep.model}, objective, data, cfg)
    else:  # the loop before it (commit 1bf8ea6 and earlier)
        tt.train(prep.model, data, None, cfg, num_classes=10, params=prep.params, regularizer=prep.regularizer)
    return (time.perf_counter() - t) / steps


def tiny_steps(x, y, steps):
    """The loop alone: a 2-layer MLP on 64 features, where a step's compute is small and the loop's own per-step
    work (batch dicts, context, logging, schedule) shows."""
    import transferlab.train as tt

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    data = torch.utils.data.TensorDataset(x.repeat(steps, 1), y.repeat(steps))
    cfg = tt.TrainConfig(epochs=1, lr=1e-3, batch_size=len(y), amp=False)
    t = time.perf_counter()
    if hasattr(tt, "Objective"):
        tt.train({"model": net}, tt.Supervised(), data, cfg)
    else:
        tt.train(net, data, None, cfg, num_classes=10)
    return (time.perf_counter() - t) / steps


def _inputs(args):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    return x, y


def child(args) -> None:
    """One variant's transferlab timings (warm-up first), as JSON on the last line."""
    import json

    import transferlab

    print("transferlab from", transferlab.__file__, flush=True)
    if args.tiny:
        torch.set_num_threads(1)  # tiny ops: two threads only add synchronisation noise
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(args.batch_size, 64, generator=g), torch.randint(0, 10, (args.batch_size,), generator=g)
        tiny_steps(x, y, 20)
        print(json.dumps([tiny_steps(x, y, args.steps) for _ in range(args.repeats)]))
        return
    x, y = _inputs(args)
    transferlab_steps(x, y, 2)
    print(json.dumps([transferlab_steps(x, y, args.steps) for _ in range(args.repeats)]))


def _run_child(src, args):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, __file__, "--child", "--image-size", str(args.image_size), "--batch-size",
           str(args.batch_size), "--steps", str(args.steps), "--repeats", str(args.repeats)] + (
               ["--tiny"] if args.tiny else [])
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()
    where = out[0].split("from ", 1)[1]
    assert where.startswith(src), f"child imported {where}, not {src}"
    return json.loads(out[-1])


def before_after(args) -> None:
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench_lora_before."))
    tree = tmp / "tree"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), args.before], check=True,
                   capture_output=True)
    try:
        before, after, ratios = [], [], []
        for _ in range(args.rounds):
            b = _run_child(str(tree / "src"), args)
            a = _run_child(str(root / "src"), args)
            before += b
            after += a
            ratios.append(statistics.median(a) / statistics.median(b))
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    mb, ma = statistics.median(before), statistics.median(after)
    what = "tiny MLP" if args.tiny else "LoRA Lite0"
    print(f"{what}: loop at {args.before}: {mb * 1000:.2f} ms/step (runs {', '.join(f'{v * 1000:.2f}' for v in before)})")
    print(f"{what}: loop now: {ma * 1000:.2f} ms/step (runs {', '.join(f'{v * 1000:.2f}' for v in after)})")
    print(f"ratio now / {args.before} = {ma / mb:.3f} (ratio of medians); per round "
          f"{', '.join(f'{r:.3f}' for r in ratios)} (median {statistics.median(ratios):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", default=None, help="git ref of an earlier loop to compare the working tree with")
    ap.add_argument("--rounds", type=int, default=3, help="alternating before/after child processes (--before)")
    ap.add_argument("--tiny", action="store_true", help="with --before: time the loop on a tiny MLP instead of LoRA "
                    "(per-step overhead of the loop itself)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.before:
        before_after(args)
        return
    x, y = _inputs(args)
    bare_peft_steps(x, y, 2)  # warm-up: allocator, kernels
    transferlab_steps(x, y, 2)
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_peft_steps(x, y, args.steps))
        ours.append(transferlab_steps(x, y, args.steps))
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"torch threads {torch.get_num_threads()}; image size {args.image_size}; batch {args.batch_size}; "
          f"{args.steps} steps x {args.repeats}")
    print(f"bare peft   {b * 1000:.0f} ms/step  (runs {', '.join(f'{v * 1000:.0f}' for v in bare)})")
    print(f"transferlab {o * 1000:.0f} ms/step  (runs {', '.join(f'{v * 1000:.0f}' for v in ours)})")
    print(f"ratio transferlab / bare peft = {o / b:.3f}")


if __name__ == "__main__":
    main()
