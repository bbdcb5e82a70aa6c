"""The small built-in zoo: nine small timm models (ResNet, ConvNeXt, ViT at test widths) pretrained *here*, on three
offline source tasks (generated shapes, generated textures, Fashion-MNIST's footwear-and-bags half), so a ranking
has architectures and source tasks that differ, not only ImageNet models.

``transferlab zoo build`` re-creates them deterministically (fixed seeds, one CPU thread, the shared training loop;
the builder is :mod:`transferlab.pretrain`, which trains with the loop, above this layer);
the weights (about 11 MB in all) ship in ``zoo/_weights/`` with a manifest recording each model's source-task test
accuracy, the versions used and the weights' SHA-256.
"""

from __future__ import annotations

import json
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
        backbone.head_classes = lambda: tuple(source_data(spec.source, "train").class_names)  # its head's classes
        return backbone

    return factory
