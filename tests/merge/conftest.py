"""Fixtures: a tiny timm base and three fits of it (two full fine-tunes, one LoRA) on a tiny image folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def merge_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    import timm
    import torch
    from safetensors.torch import save_file
    from tests.conftest import write_image_folder

    from transferlab.data import load_dataset
    from transferlab.fit import fit

    root = tmp_path_factory.mktemp("merge_zoo")
    torch.manual_seed(0)
    base = timm.create_model("test_efficientnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(root / "base.safetensors"))
    ref = f"timm:test_efficientnet@{root / 'base.safetensors'}"
    a = load_dataset(str(write_image_folder(root / "imgs_a")), "train")
    b = load_dataset(str(write_image_folder(root / "imgs_b", classes=("x", "y", "z", "w"))), "train")
    fit(a, ref, "finetune", out=root / "task_a", epochs=1, image_size=32, lr=1e-2, seed=0)
    fit(b, ref, "finetune", out=root / "task_b", epochs=1, image_size=32, lr=1e-2, seed=1)
    fit(a, ref, "lora", out=root / "task_lora", epochs=1, image_size=32, lr=1e-2, seed=2)
    return {"ref": ref, "root": root, "a": a, "b": b, "dirs": [root / "task_a", root / "task_b", root / "task_lora"]}


def state_of(path: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(str(path))
