"""A saved model as a scikit-learn-like classifier: ``Predictor(DIR).predict(X)`` gives class names as the model
was fitted with, ``predict_proba(X)`` their probabilities [N, C] in the order of ``classes_``; ``X`` is anything
:func:`~transferlab.data.load_inputs` reads (labelled or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, Inputs, load_inputs
from ._predict import Predictions, class_probabilities, predictions_of


class Predictor:
    """A fitted model directory (``fit``, ``merge``, ``auto``... ``--out``, or a ``FitResult``) with the
    scikit-learn classifier interface: ``predict``, ``predict_proba``, ``score``, ``classes_``.

    It is already fitted: the network loads on first use and stays loaded (``net_``). ``head``: a merged model's task
    head; ``split``: the split used of labelled data given by reference (data without labels is used whole);
    ``text_column``, ``label_column``, ``path_column``, ``id_column``: a table's columns (:func:`load_inputs`);
    ``device``, ``precision``, ``threads``: where it computes (``transferlab._runtime``); ``progress``: a bar on
    stderr."""

    def __init__(self, model_dir: str | Path | Any, *, head: str | None = None, split: str = "test",
                 batch_size: int = 64, text_column: str = "text", label_column: str = "label",
                 path_column: str = "path", id_column: str | None = None, device: str | None = None,
                 precision: str | None = None, threads: int | None = None, progress: bool = False) -> None:
        self.model_dir = model_dir
        self.head = head
        self.split = split
        self.batch_size = batch_size
        self.text_column = text_column
        self.label_column = label_column
        self.path_column = path_column
        self.id_column = id_column
        self.device = device
        self.precision = precision
        self.threads = threads
        self.progress = progress

    def _runtime(self) -> Any:
        from .._runtime import runtime

        return runtime(self.device, self.precision, self.threads)

    def _loaded(self) -> Any:
        if getattr(self, "net_", None) is None:
            from ._saved import _model_dir, load

            with self._runtime():
                self.net_ = load(_model_dir(self.model_dir), head=self.head)
        return self.net_

    @property
    def classes_(self) -> np.ndarray:
        """The model's class names (str), in the order of ``predict_proba``'s columns."""
        return np.asarray(self._loaded().transferlab_config["class_names"], dtype=str)

    @property
    def modality(self) -> str:
        """What the model takes: ``"image"`` or ``"text"``."""
        return str(self._loaded().transferlab_config.get("modality", "image"))

    def inputs(self, X: Any) -> Dataset | Inputs:
        """``X`` as this model reads it: a labelled :class:`Dataset` or :class:`Inputs` (:func:`load_inputs`)."""
        return load_inputs(X, self.split, text_column=self.text_column, label_column=self.label_column,
                           path_column=self.path_column, id_column=self.id_column, modality=self.modality)

    def predictions(self, X: Any) -> Predictions:
        """The predictions on ``X`` with an identifier per input (and ``X``'s own labels, where it has them); a
        folder or table may skip unreadable images (with a warning): the identifiers say which inputs remain."""
        from .._runtime import current_device

        data = self.inputs(X)
        net = self._loaded()
        with self._runtime():
            net.to(current_device())
            p = class_probabilities(net, data, self.batch_size, self.progress)
        return predictions_of(data, p, self.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [N, C] (float32; columns in the order of ``classes_``)."""
        return self.predictions(X).proba

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class names [N] (str, as the model was fitted with)."""
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X: Any, y: Any = None) -> float:
        """Accuracy on ``X``: against ``y`` (class names), or ``X``'s own labels when ``y`` is None."""
        pred = self.predictions(X)
        truth = pred.labels if y is None else [str(v) for v in np.asarray(y).tolist()]
        if truth is None:
            from ..errors import DataError

            raise DataError("score needs labels: give y (class names), or data with labels")
        if len(truth) != len(pred):
            from ..errors import DataError

            raise DataError(f"score: {len(truth)} labels for {len(pred)} predictions")
        return float(np.mean(pred.predicted.astype(str) == np.asarray(truth, dtype=str)))

    def __repr__(self) -> str:
        return f"Predictor({str(getattr(self.model_dir, 'out_dir', self.model_dir))!r})"
