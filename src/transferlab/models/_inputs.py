"""Image datasets -> torch datasets of (image tensor, label), with torchvision v2 augmentation for training (the
preprocessing every adapted image model is trained and served with)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import Dataset


class ImageTensors:
    """Map-style torch dataset over an image :class:`~transferlab.data.Dataset`.

    Images become RGB float tensors [3, size, size], normalised with ``mean``/``std``; with ``augment`` (a training
    split), a random resized crop (scale 0.7-1) and a horizontal flip (torchvision transforms v2) are applied first —
    or flips only, or nothing, as ``--augment light|none`` asks (:func:`transferlab._runtime.run_controls`). Every
    resize (evaluation's, and the crop's) uses ``interpolation``, the model's own (bilinear, bicubic or nearest).
    """

    def __init__(self, ds: Dataset, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: bool = False, interpolation: str = "bilinear") -> None:
        import torch
        from torchvision.transforms import v2

        from .._runtime import controls
        from ..zoo import eval_transform, interpolation_mode

        self.ds, self.size, self.interpolation = ds, size, interpolation
        mode = interpolation_mode(interpolation)  # an unknown name fails here, not at the first image
        level = controls().get("augment", "default") if augment else "none"  # --augment none|light|default
        if level == "none":  # evaluation: the zoo's own preprocessing (rank scores the inputs a fit sees)
            self.transform = eval_transform(size, mean, std, interpolation)
            return
        resize = (v2.RandomResizedCrop(size, scale=(0.7, 1.0), interpolation=mode, antialias=True)
                  if level == "default" else v2.Resize((size, size), interpolation=mode, antialias=True))
        self.transform = v2.Compose([resize, v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.ds)

    def _image(self, i: int) -> Any:
        import torch

        item = self.ds.items[i]
        if isinstance(item, np.ndarray):
            arr = item if item.ndim == 3 else item[..., None]
        else:
            from ..zoo import read_image

            arr = read_image(item)  # writable: torch.from_numpy needs it
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import torch

        return self.transform(self._image(i)), torch.tensor(int(self.ds.labels[i]))
