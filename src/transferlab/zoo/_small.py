"""The small built-in zoo: nine small timm models (ResNet, ConvNeXt, ViT at test widths) pretrained *here*, on three
offline source tasks (generated shapes, generated textures, Fashion-MNIST's footwear-and-bags half), so a ranking
has architectures and source tasks that differ, not only ImageNet models.

``transferlab zoo build`` re-creates them deterministically (fixed seeds, one CPU thread, the shared training loop);
the weights (about 11 MB in all) ship in ``zoo/_weights/`` with a manifest recording each model's source-task test
accuracy, the versions used and the weights' SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

NATIVE = 32
MEAN = STD = (0.5, 0.5, 0.5)
FASHION_SOURCE_CLASSES = (5, 7, 8, 9, 6)  # sandal, sneaker, bag, ankle boot, shirt


@dataclass(frozen=True)
class SmallModel:
    name: str
    arch: str
    kwargs: tuple[tuple[str, Any], ...]
    source: str  # shapes | textures | fashion
    epochs: int
    label: str

    @property
    def timm_kwargs(self) -> dict[str, Any]:
        return dict(self.kwargs)


_ARCHS = {"resnet": ("test_resnet", (), "ResNet"), "convnext": ("test_convnext", (), "ConvNeXt"),
          "vit": ("test_vit", (("img_size", NATIVE),), "ViT")}
_SOURCES = {"shapes": ("builtin:shapes-source", 4, "shapes"), "textures": ("builtin:textures-source", 4, "textures"),
            "fashion": ("builtin:fashion-mnist", 12, "Fashion-MNIST (5 classes)")}
SMALL_MODELS = {f"small_{a}_{s}": SmallModel(f"small_{a}_{s}", arch, kw, s, _SOURCES[s][1], f"{label} · {_SOURCES[s][2]}")
                for a, (arch, kw, label) in _ARCHS.items() for s in _SOURCES}


def weights_dir() -> Path:
    return Path(str(resources.files("transferlab.zoo").joinpath("_weights")))


def manifest(directory: Path | None = None) -> dict[str, Any]:
    path = (directory or weights_dir()) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def source_data(source: str, split: str) -> Any:
    from ..data import load_dataset

    ds = load_dataset(_SOURCES[source][0], split)
    if source == "fashion":
        keep = np.isin(ds.labels, FASHION_SOURCE_CLASSES)
        sub = ds.subset(np.flatnonzero(keep))
        remap = {c: i for i, c in enumerate(FASHION_SOURCE_CLASSES)}
        from ..data import Dataset

        return Dataset(f"fashion-source-{split}", "image", sub.items, np.array([remap[int(v)] for v in sub.labels]),
                       tuple(ds.class_names[c] for c in FASHION_SOURCE_CLASSES), split)
    return ds


def create(spec: SmallModel, num_classes: int) -> Any:
    import timm

    model = timm.create_model(spec.arch, pretrained=False, num_classes=num_classes, **spec.timm_kwargs)
    model.transferlab_timm_kwargs = spec.timm_kwargs  # fit records it: load() rebuilds the same shapes
    return model


def build_model(spec: SmallModel, out_dir: Path, *, epochs: int | None = None, limit: int | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Pretrain one model on its source task (seed 0, one thread); write NAME.safetensors; return its manifest row."""
    import torch
    from safetensors.torch import save

    from .._io import atomic_open
    from ..fit._data import ImageTensors
    from ..train import TrainConfig, train
    from ..train.loop import seed_everything

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
        train(model, ImageTensors(train_ds, NATIVE, MEAN, STD, augment=True), None, cfg,
              num_classes=train_ds.num_classes, progress=progress, device="cpu")
        seconds = time.perf_counter() - t0
        model.eval()
        correct = 0
        data = ImageTensors(test_ds, NATIVE, MEAN, STD)
        with torch.inference_mode():
            for x, y in torch.utils.data.DataLoader(data, batch_size=256):
                correct += int((model(x).argmax(1) == y).sum())
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


def small_backbone(name: str) -> Callable[[str], Any]:
    def factory(ref: str) -> Any:
        from ._backbone import TorchImageBackbone

        spec = SMALL_MODELS[name]
        row = manifest().get("models", {}).get(name)
        path = weights_dir() / f"{name}.safetensors"
        if row is None or not path.is_file():
            raise ModelError(f"{ref}: its weights are not built; run `transferlab zoo build`")

        def build() -> Any:
            from safetensors.torch import load_file

            model = create(spec, row["classes"])
            model.load_state_dict(load_file(str(path)))
            return model.eval()

        meta = {"params": row["params"], "source_dataset": spec.source if spec.source != "fashion"
                else "Fashion-MNIST (sandal, shirt, sneaker, bag, ankle boot)",
                "source_accuracy": round(row["source_accuracy"], 2), "architecture": spec.arch}
        backbone = TorchImageBackbone(ref, build, weights_id=f"sha256:{row['sha256']}", mean=MEAN, std=STD,
                                      native_size=NATIVE, has_head=True, meta=meta)
        backbone.source_data = lambda: source_data(spec.source, "train")  # source statistics for PED
        return backbone

    return factory
