"""Prediction on labelled or unlabelled data: a loaded model's inputs for a :class:`~transferlab.data.Dataset` or
:class:`~transferlab.data.Inputs`, its class probabilities through the one inference loop, and the predictions as a
table (one row per input: its identifier, its label where the data has one, the predicted class name and its
probability, and on request every class's probability)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, Inputs
from ..errors import TransferlabError

#: the header of every predictions table; ``label`` only where the data has labels, then one ``proba_<class>`` each
COLUMNS = ("index", "item", "label", "prediction", "probability")
PROBA_PREFIX = "proba_"


def inference_dataset(data: Dataset | Inputs) -> Dataset:
    """``data`` as what the input adapters read: a labelled Dataset as it is; inputs without labels with a
    placeholder label each (the inference loop carries labels along and ignores them)."""
    if isinstance(data, Dataset):
        return data
    return Dataset(data.name, data.modality, data.items, np.zeros(len(data), dtype=np.int64), ("?",), "predict",
                   dict(data.meta))


def feed(net: Any, data: Dataset | Inputs) -> Any:
    """A torch dataset of ``(input, label)`` for ``data`` with a loaded model's own preprocessing."""
    cfg = net.transferlab_config
    modality = cfg.get("modality", "image")
    if data.modality != modality:
        what = {"array": "numeric arrays (not images: images are uint8 [N, H, W(, C)])",
                "text": "texts", "image": "images"}[data.modality]
        raise TransferlabError(f"this model takes {modality} data; {data.name} holds {what}")
    ds = inference_dataset(data)
    if modality == "text":
        from ._text import TextTensors

        return TextTensors(ds, net.transferlab_tokenizer, int(cfg.get("max_length") or 256))
    from ._card import interpolation_of
    from ._inputs import ImageTensors

    return ImageTensors(ds, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]),
                        interpolation=interpolation_of(cfg))


def class_probabilities(net: Any, data: Dataset | Inputs, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Softmax of a loaded model's logits on ``data`` [N, C], in ``data``'s order; ``progress``: a bar on stderr."""
    import torch

    from .._progress import progress as progress_bars
    from ._infer import predict_logits

    with progress_bars(progress) as bars:
        task = bars.add("predicting", len(data))
        logits = torch.from_numpy(predict_logits(net, feed(net, data), batch_size,
                                                 on_batch=lambda n: bars.advance(task, n)))
    return torch.softmax(logits, dim=1).numpy()


def identifiers(data: Dataset | Inputs) -> list[str]:
    """One identifier per input: an unlabelled input's own (a file path, a row number, a table's id column); for a
    labelled dataset its ``meta["ids"]`` where read (``--id-column``), else its image path or text, or
    ``NAME[i]`` for arrays."""
    if isinstance(data, Inputs):
        return list(data.ids)
    ids = data.meta.get("ids")
    if ids is not None and len(ids) == len(data):
        return [str(v) for v in ids]
    if hasattr(data.items, "shape"):
        return [f"{data.name}[{i}]" for i in range(len(data))]
    return [str(v) for v in data.items]


@dataclass
class Predictions:
    """A model's predictions on some data: ``classes`` (the model's class names, as given when it was fitted),
    ``proba`` [N, C], ``ids`` (one per input) and ``labels`` (the data's own labels, or None without)."""

    classes: tuple[str, ...]
    proba: np.ndarray
    ids: list[str]
    labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.proba)

    @property
    def predicted(self) -> np.ndarray:
        """The predicted class names [N] (an object array of str)."""
        return np.asarray(self.classes, dtype=object)[self.proba.argmax(1)]

    def header(self, proba: bool = False) -> list[str]:
        cols = [c for c in COLUMNS if c != "label" or self.labels is not None]
        return cols + ([PROBA_PREFIX + c for c in self.classes] if proba else [])

    def rows(self, proba: bool = False) -> list[list[Any]]:
        """The table's rows (:meth:`header`): probabilities written with 6 decimals."""
        best = self.proba.argmax(1)
        out = []
        for i, (ident, k, p) in enumerate(zip(self.ids, best, self.proba, strict=True)):
            row: list[Any] = [i, ident] + ([self.labels[i]] if self.labels is not None else [])
            row += [self.classes[k], f"{p[k]:.6f}"] + ([f"{v:.6f}" for v in p] if proba else [])
            out.append(row)
        return out

    def write_csv(self, path: str | Path, proba: bool = False) -> Path:
        """Write the table to ``path`` as CSV (atomically: a failure leaves nothing half-written)."""
        import csv

        from .._io import atomic_open

        with atomic_open(Path(path), "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(self.header(proba))
            w.writerows(self.rows(proba))
        return Path(path)


def predictions_of(data: Dataset | Inputs, proba: np.ndarray, classes: Any) -> Predictions:
    """The :class:`Predictions` of ``proba`` on ``data``."""
    labels = [data.class_names[k] for k in data.labels] if isinstance(data, Dataset) else None
    return Predictions(tuple(str(c) for c in classes), proba, identifiers(data), labels)
