"""Tiny separable colour images and tiny fitted teachers for the distillation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.distill._data import colours

from transferlab.data import Dataset


@pytest.fixture(scope="session")
def colour_data() -> tuple[Dataset, Dataset]:
    return colours(16, "train", 0), colours(8, "test", 1)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory, colour_data, tiny_timm_weights: Path) -> Path:
    """A tiny network fine-tuned on the colours (at 24 px: another input size than the students' 16 px)."""
    from transferlab.fit import fit

    train, _ = colour_data
    out = tmp_path_factory.mktemp("teacher") / "t"
    fit(train, f"timm:test_efficientnet@{tiny_timm_weights}", "finetune", epochs=4, lr=3e-3, image_size=24,
        batch_size=8, out=out)  # no test split: no report to draw
    return out
