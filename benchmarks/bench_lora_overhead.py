"""Benchmark: step time of transferlab's LoRA (method + training loop) against bare peft on the same model and batch.

Both sides: EfficientNet-Lite0 (built-in ImageNet weights), LoRA r=8 on the same target modules, AdamW, batch 32 at
``--image-size``, on the same fixed tensors (no data loading on either side). Bare peft: ``get_peft_model`` and a
minimal loop (forward, cross-entropy, backward, step). transferlab: ``fit``'s LoRA method and
``transferlab.train.train`` on a TensorDataset of the same tensors (warm-up + cosine schedule, gradient clipping,
progress accounting included). Reported: median seconds per optimizer step over ``--steps`` steps after warm-up,
alternating the two, and the ratio.

Exact command (repository root, project venv):

    .venv/bin/python benchmarks/bench_lora_overhead.py --image-size 128 --steps 20 --repeats 3
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
    from transferlab.fit._peft import lora
    from transferlab.train import TrainConfig, train

    prep = lora(build(), r=8)
    data = torch.utils.data.TensorDataset(x.repeat(steps, 1, 1, 1), y.repeat(steps))
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=len(y), amp=False)
    t = time.perf_counter()
    train(prep.model, data, None, cfg, num_classes=10, params=prep.params, regularizer=prep.regularizer)
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
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
