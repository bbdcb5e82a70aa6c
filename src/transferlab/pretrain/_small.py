"""Pretraining small models on built-in source tasks: the small zoo's builder (``transferlab zoo build``).

The zoo layer describes the models and loads their shipped weights; building them trains, so it lives here, above
the training loop."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._runtime import in_runtime
from ..zoo.small import (
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


def _pretrain(model: Any, train_ds: Any, test_ds: Any, *, epochs: int, seed: int, progress: bool,
              checkpoint_dir: Path | None = None) -> tuple[float, float]:
    """Train ``model`` on ``train_ds`` from scratch with the zoo's recipe (AdamW 2e-3, batch 64, 10 % warm-up, the
    native 32-px input, augmented) on one thread; return (training seconds, test accuracy in %)."""
    import torch

    from ..models import ImageTensors, predict_logits
    from ..train import Supervised, TrainConfig, train

    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-identical rebuilds: the same reduction order everywhere
    try:
        cfg = TrainConfig(epochs=epochs, lr=2e-3, batch_size=64, seed=seed, warmup=0.1)
        t0 = time.perf_counter()
        train({"model": model}, Supervised(), ImageTensors(train_ds, NATIVE, MEAN, STD, augment=True), cfg,
              progress=progress, device="cpu", checkpoint_dir=checkpoint_dir)
        seconds = time.perf_counter() - t0
        pred = predict_logits(model, ImageTensors(test_ds, NATIVE, MEAN, STD), 256).argmax(1)
        return seconds, 100.0 * int((pred == test_ds.labels).sum()) / len(test_ds)
    finally:
        torch.set_num_threads(old_threads)


def build_model(spec: SmallModel, out_dir: Path, *, epochs: int | None = None, limit: int | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Pretrain one model on its source task (seed 0, one thread); write NAME.safetensors; return its manifest row."""
    from safetensors.torch import save

    from .._io import atomic_open
    from ..train import seed_everything

    train_ds, test_ds = source_data(spec.source, "train"), source_data(spec.source, "test")
    if limit:
        train_ds = train_ds.stratified_sample(limit, seed=0)
    seed_everything(0)
    model = create(spec, train_ds.num_classes)
    epochs = epochs or spec.epochs
    seconds, accuracy = _pretrain(model, train_ds, test_ds, epochs=epochs, seed=0, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    path = out_dir / f"{spec.name}.safetensors"
    # one metadata key: safetensors writes metadata from a hash map whose order varies between processes
    blob = save(state, metadata={"transferlab": f"small zoo: {spec.arch} pretrained on {spec.source}"})
    with atomic_open(path, "wb") as fh:
        fh.write(blob)
    return {"arch": spec.arch, "kwargs": spec.timm_kwargs, "source": spec.source, "classes": train_ds.num_classes,
            "class_names": list(train_ds.class_names), "epochs": epochs, "n_train": len(train_ds),
            "source_accuracy": accuracy, "train_seconds": seconds,
            "params": int(sum(p.numel() for p in model.parameters())),
            "sha256": hashlib.sha256(blob).hexdigest()}


ARCHITECTURES = ("resnet", "convnext", "vit")


@dataclass
class PretrainResult:
    """A model pretrained from scratch on a source: its directory (``fit --init`` takes it), source test accuracy
    (%), training seconds, and the numbers written to ``metrics.json``."""

    out: Path | None
    source_accuracy: float
    train_seconds: float
    metrics: dict[str, Any]
    model: Any = None


@in_runtime
def pretrain(source: str | Path | Any, arch: str = "resnet", out: str | Path | None = None, *, epochs: int = 10,
             limit: int | None = None, seed: int = 0, overwrite: bool = False,
             progress: bool = False) -> PretrainResult:
    """Pretrain one small built-in architecture (``resnet``, ``convnext``, ``vit``: the small zoo's) from scratch on
    ``source`` (any image dataset: a pruned source from ``transferlab prune`` included) with the small zoo's recipe,
    and write an ordinary model directory to ``out``: ``transferlab fit TARGET --model builtin:small_ARCH_shapes
    --init OUT`` fine-tunes it on a target (the head is replaced), and ``predict``/``eval`` work on the source.
    ``limit``: a class-stratified sample of the source's train split. A killed run resumes from ``OUT/checkpoints``."""
    from ..data import Dataset, load_dataset
    from ..errors import TransferlabError
    from ..models import RunOutput, architecture_of, recorded_reference
    from ..train import check_run_arguments, seed_everything

    if arch not in ARCHITECTURES:
        raise TransferlabError(f"unknown architecture {arch!r} to pretrain; known: {', '.join(ARCHITECTURES)} (the "
                               "small zoo's test_resnet, test_convnext and test_vit)")
    check_run_arguments(epochs=epochs, batch_size=64)
    if out is not None and isinstance(source, Dataset):
        raise TransferlabError("the saved model names its source: give it as a reference (builtin:NAME or a path)")
    train_ds, test_ds = load_dataset(source, "train"), load_dataset(source, "test")
    if train_ds.modality != "image":
        raise TransferlabError(f"{train_ds.name} holds {train_ds.modality} data: the small architectures take images")
    if train_ds.num_classes < 2:
        raise TransferlabError(f"{train_ds.name} has one class: nothing to pretrain on")
    if limit:
        train_ds = train_ds.stratified_sample(limit, seed=seed)
    spec = next(s for s in SMALL_MODELS.values() if s.name == f"small_{arch}_shapes")
    ref = f"builtin:small_{arch}_shapes"
    with RunOutput(out, model=ref, method="pretrain", what="pretraining", overwrite=overwrite,
                   inputs=[source]) as output:
        seed_everything(seed)
        model = create(spec, train_ds.num_classes)
        seconds, accuracy = _pretrain(model, train_ds, test_ds, epochs=epochs, seed=seed, progress=progress,
                                      checkpoint_dir=output.checkpoints)
        metrics = {"method": "pretrain", "source": train_ds.name, "architecture": spec.arch, "epochs": epochs,
                   "seed": seed, "n_train": len(train_ds), "num_classes": train_ds.num_classes,
                   "source_test_accuracy": accuracy, "n_test": len(test_ds), "train_seconds": seconds,
                   "params": int(sum(p.numel() for p in model.parameters()))}
        if output.out is not None:
            card = output.card(modality="image", architecture=architecture_of(model),
                               num_classes=train_ds.num_classes, class_names=list(train_ds.class_names),
                               image_size=NATIVE, mean=list(MEAN), std=list(STD), weights="state_dict",
                               train={"epochs": epochs, "lr": 2e-3, "batch_size": 64, "seed": seed,
                                      "source": recorded_reference(str(source), output.out)})
            output.write(model, card, metrics, portable_metrics=False)
    return PretrainResult(output.out, accuracy, seconds, metrics, model)


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
