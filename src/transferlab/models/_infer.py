"""The one inference loop: a frozen network over a torch dataset of ``(input, label)`` — logits or class
probabilities, and where asked the features a module receives (the head's input: the pooled features), in the
dataset's order. Prediction, evaluation, feature extraction for metrics and selectors all go through
:func:`infer`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError, TransferlabError


@dataclass
class Inference:
    """``outputs``: logits, or probabilities with ``probs=True`` [N, C] (float32); ``features``: what the tapped
    module received [N, D] (float32), or None; ``labels``: the dataset's labels [N]."""

    outputs: np.ndarray
    features: np.ndarray | None
    labels: np.ndarray


class HeadInputTap:
    """The input of a network's head (its pooled features) — or of ``module`` — captured by a forward pre-hook;
    ``remove()`` it after."""

    def __init__(self, net: Any, module: Any = None) -> None:
        from ._build import head_module_name

        self.value: Any = None
        target = module if module is not None else net.get_submodule(head_module_name(net))
        self._handle = target.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: tuple[Any, ...]) -> None:
        self.value = args[0]

    def remove(self) -> None:
        self._handle.remove()


def infer(net: Any, data: Any, batch_size: int = 64, *, order: Any = None, probs: bool = False,
          features: Any = None, on_batch: Any = None, check_finite: bool = True) -> Inference:
    """``net`` (in eval mode; its mode is restored after; on its own device, at the runtime's precision) over ``data`` in batches of ``batch_size``
    (variable-length inputs in length-sorted batches). ``order``: the output columns to keep, in that order (a
    teacher's classes in the data's order); ``probs``: softmax of those columns; ``features``: True for the head's
    input, or a module whose input to keep; ``on_batch(n)`` after each batch of ``n`` examples (a progress bar);
    ``check_finite``: outputs that are not finite are an error naming the first example. A network with a
    ``transferlab_examples(data, index)`` method is told which examples of ``data`` each batch holds before its
    forward (a petal model reads their quality column)."""
    import torch

    n = len(data)
    if n == 0:
        raise TransferlabError("nothing to predict: the dataset is empty")
    lengths = getattr(data, "lengths", None)
    sort = np.argsort(-np.asarray(lengths), kind="stable") if lengths is not None else np.arange(n)
    batches = [sort[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    from .._runtime import autocast

    dev = next(net.parameters()).device
    pin = dev.type == "cuda"  # page-locked batches copy to the GPU asynchronously
    tap = None if features is None else HeadInputTap(net, None if features is True else features)
    examples = getattr(net, "transferlab_examples", None)
    was = net.training
    net.eval()
    out: np.ndarray | None = None
    feats: np.ndarray | None = None
    labels: list[Any] = [None] * n
    try:
        with torch.inference_mode(), autocast(dev):
            for idx, (x, y) in zip(batches, torch.utils.data.DataLoader(data, batch_sampler=batches,
                                                                        pin_memory=pin), strict=True):
                if examples is not None:
                    examples(data, idx)
                z = net(x.to(dev, non_blocking=pin)).float()
                if order is not None:
                    z = z[:, torch.as_tensor(order, device=z.device)]
                v = (torch.softmax(z, 1) if probs else z).cpu().numpy()
                if check_finite and not np.isfinite(v).all():
                    first = idx[int(np.flatnonzero(~np.isfinite(v).all(1))[0])]
                    raise ModelError(f"the model's outputs are not finite (NaN or infinity), first at example "
                                     f"{first}: its weights or the inputs are broken; no prediction is written")
                if out is None:
                    out = np.empty((n, v.shape[1]), dtype=np.float32)
                out[idx] = v
                if tap is not None:
                    f = tap.value.flatten(1).float().cpu().numpy()
                    if feats is None:
                        feats = np.empty((n, f.shape[1]), dtype=np.float32)
                    feats[idx] = f
                for i, label in zip(idx, np.asarray(y).tolist(), strict=True):
                    labels[i] = label
                if on_batch is not None:
                    on_batch(len(idx))
    finally:
        if tap is not None:
            tap.remove()
        net.train(was)
    assert out is not None
    return Inference(out, feats, np.asarray(labels))


def predict_logits(net: Any, data: Any, batch_size: int, on_batch: Any = None) -> np.ndarray:
    """Logits [N, C] in the dataset's order (:func:`infer`); outputs that are not finite are an error."""
    return infer(net, data, batch_size, on_batch=on_batch).outputs


def features_and_probs(net: Any, data: Any, order: Any = None, batch_size: int = 64) -> tuple[np.ndarray,
                                                                                            np.ndarray]:
    """A frozen network's pooled features (its head's input) and class probabilities (columns by ``order``), as
    float64 for the metrics (:func:`infer`)."""
    r = infer(net, data, batch_size, order=order, probs=True, features=True, check_finite=False)
    assert r.features is not None
    return r.features.astype(np.float64), r.outputs.astype(np.float64)
