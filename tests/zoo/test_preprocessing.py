"""One owner of image preprocessing: the zoo's feature batches (what `rank` scores) are exactly the inputs an adapted
model trains on without augmentation and predicts on (models.ImageTensors), for in-memory arrays (grey, upsampled)
and for files of different sizes (each resized straight to the target: no detour through the first file's size)."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.data import Dataset
from transferlab.models import ImageTensors
from transferlab.zoo._images import image_batches

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _both(ds: Dataset, size: int):
    import torch

    idx = np.arange(len(ds))
    zoo = torch.cat(list(image_batches(ds, idx, batch_size=3, size=size, mean=MEAN, std=STD)))
    model = torch.stack([ImageTensors(ds, size, MEAN, STD)[i][0] for i in idx])
    return zoo, model


@pytest.mark.parametrize("shape,size", [((5, 8, 8), 32), ((4, 40, 40, 3), 24)])
def test_zoo_batches_are_the_models_eval_inputs_for_arrays(shape, size):
    rng = np.random.default_rng(0)
    ds = Dataset("a", "image", rng.integers(0, 256, shape, dtype=np.uint8), np.arange(shape[0]) % 2, ("x", "y"))
    zoo, model = _both(ds, size)
    assert zoo.shape == (shape[0], 3, size, size)
    assert bool((zoo == model).all())  # exactly: the same uint8 rounding after the resize


def test_zoo_batches_are_the_models_eval_inputs_for_files_of_several_sizes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate([(30, 50), (64, 64), (17, 23)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    ds = Dataset("f", "image", paths, np.array([0, 1, 0]), ("x", "y"))
    zoo, model = _both(ds, 32)
    assert bool((zoo == model).all())
