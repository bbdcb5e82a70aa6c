"""The plain weighted sums streamed: ``average``, ``linear`` and ``task_arithmetic`` are ``c_0 base + sum_t c_t
theta_t`` (:meth:`Method.weighted_sum`), so each output tensor is one accumulator the models' tensors are added into,
read straight from their files' mapped pages (:meth:`Source.stream`) one tensor at a time. No task vector is formed,
and the base is read only where ``c_0 != 0`` (``task_arithmetic``; never for ``average``), apart from the rows the
mergeability check samples. Inputs are checked for NaN/inf through the result: a non-finite sum has a non-finite
input or overflowed, and only then are the inputs read the checked way, which names the broken one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._arith import compute_dtype
from ._sources import Source, _finite


def streamable(tasks: Sequence[Source]) -> bool:
    """Whether every model's task vector is its tensors minus the base's (not a LoRA product), so that a weighted
    sum of the tensors is the merge."""
    return all(type(t).delta is Source.delta for t in tasks)


def weighted_sum(key: str, base: Source, tasks: Sequence[Source], coefs: tuple[float, Sequence[float]],
                 observer: Any = None, scratch: Scratch | None = None) -> Any:
    """``c_0 base[key] + sum_t c_t tasks[t][key]`` in the compute dtype (float32; float64 for float64 tensors),
    ``coefs = (c_0, [c_1..c_T])``; ``observer`` (the mergeability check) samples rows of the base and of every
    model. With ``scratch`` the result lies in its buffer, overwritten by the next call."""
    import torch

    c0, cs = coefs
    views = [t.stream(key) for t in tasks]
    try:
        cd = compute_dtype(views[0])
        acc = torch.mul(views[0].to(cd), cs[0], out=scratch.take(views[0].shape, cd)) if scratch is not None \
            else torch.mul(views[0].to(cd), cs[0])
        for v, c in zip(views[1:], cs[1:], strict=True):
            acc.add_(v, alpha=c)
        b = base.stream(key) if c0 or observer is not None else None
        if c0:
            acc.add_(b, alpha=c0)
        if not _finite(acc):  # a NaN/inf input (or an overflow): the checked reads name the input
            for s in [*tasks, base] if c0 else tasks:
                s.get(key)
        if observer is not None:
            observer.sample(key, b, views)  # reads the sampled rows only
    finally:
        for s in [*tasks, base]:
            s.release(key)
    return acc


class Scratch:
    """One buffer per dtype, grown to the largest tensor, that every sum is computed in when the consumer copies it
    at once (the file writer): no fresh memory per tensor, whose first touch costs a page fault per 4 KB."""

    def __init__(self) -> None:
        self._buf: dict[Any, Any] = {}

    def take(self, shape: Any, dtype: Any) -> Any:
        import math

        import torch

        n = math.prod(shape)
        buf = self._buf.get(dtype)
        if buf is None or buf.numel() < n:
            buf = self._buf[dtype] = torch.empty(n, dtype=dtype)
        return buf[:n].view(shape)
