"""Pretraining small models on built-in source tasks: the small zoo's builder (``transferlab zoo build``).

The zoo layer describes the models and loads their shipped weights; building them trains, so it lives here, above
the training loop."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..zoo._small import (
    MEAN,
    NATIVE,
    SMALL_MODELS,
    STD,
    SmallModel,
    create,
    manifest,
    source_data,
    weights_dir,
)


def build_model(spec: SmallModel, out_dir: Path, *, epochs: int | None = None, limit: int | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Pretrain one model on its source task (seed 0, one thread); write NAME.safetensors; return its manifest row."""
    import torch
    from safetensors.torch import save

    from .._io import atomic_open
    from ..models import ImageTensors, predict_logits
    from ..train import Supervised, TrainConfig, seed_everything, train

    train_ds, test_ds = source_data(spec.source, "train"), source_data(spec.source, "test")
    if limit:
        train_ds = train_ds.stratified_sample(limit, seed=0)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-identical rebuilds: the same reduction order everywhere
    try:
        seed_everything(0)
        model = create(spec, train_ds.num_classes)
        cfg = TrainConfig(epochs=epochs or spec.epochs, lr=2e-3, batch_size=64, seed=0, warmup=0.1)
        t0 = time.perf_counter()
        train({"model": model}, Supervised(), ImageTensors(train_ds, NATIVE, MEAN, STD, augment=True), cfg,
              progress=progress, device="cpu")
        seconds = time.perf_counter() - t0
        pred = predict_logits(model, ImageTensors(test_ds, NATIVE, MEAN, STD), 256).argmax(1)
        correct = int((pred == test_ds.labels).sum())
    finally:
        torch.set_num_threads(old_threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    path = out_dir / f"{spec.name}.safetensors"
    # one metadata key: safetensors writes metadata from a hash map whose order varies between processes
    blob = save(state, metadata={"transferlab": f"small zoo: {spec.arch} pretrained on {spec.source}"})
    with atomic_open(path, "wb") as fh:
        fh.write(blob)
    return {"arch": spec.arch, "kwargs": spec.timm_kwargs, "source": spec.source, "classes": train_ds.num_classes,
            "class_names": list(train_ds.class_names), "epochs": cfg.epochs, "n_train": len(train_ds),
            "source_accuracy": 100.0 * correct / len(test_ds), "train_seconds": seconds,
            "params": int(sum(p.numel() for p in model.parameters())),
            "sha256": hashlib.sha256(blob).hexdigest()}


def build_zoo(out_dir: Path | None = None, names: list[str] | None = None, *, epochs: int | None = None,
              limit: int | None = None, progress: bool = False,
              on_done: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """(Re)build the small zoo into ``out_dir`` (default: the package's weights directory) and its manifest."""
    import importlib.metadata

    from .._io import write_json_atomic
    from ..errors import ModelError

    out = out_dir or weights_dir()
    chosen = names or list(SMALL_MODELS)
    unknown = [n for n in chosen if n not in SMALL_MODELS]
    if unknown:
        raise ModelError(f"unknown small-zoo model(s) {unknown}; known: {', '.join(SMALL_MODELS)}")
    man = manifest(out) or {"models": {}}
    man["versions"] = {p: importlib.metadata.version(p) for p in ("torch", "timm", "numpy")}
    for n in chosen:
        man["models"][n] = build_model(SMALL_MODELS[n], out, epochs=epochs, limit=limit, progress=progress)
        write_json_atomic(out / "manifest.json", man)
        if on_done is not None:
            on_done(n, man["models"][n])
    return man
