"""Batches for the loop: every example becomes a dict (``x``, ``y``, ``index``, ...); two or more streams can be
paired, the epoch defined by the first and the others cycled, reproducibly."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import TransferlabError
from ._distributed import split


class LengthGroupedBatches:
    """Batch sampler for variable-length inputs (``data.lengths``): shuffle, cut into pools of ``pool`` batches, sort
    each pool by length, batch it, shuffle the batches. Each batch then pads to a similar length (the texts of the
    built-in reviews run from 5 to 700 tokens, median 27), at the same randomness as plain shuffling per pool."""

    def __init__(self, lengths: np.ndarray, batch_size: int, generator: Any, shuffle: bool = True,
                 pool: int = 50) -> None:
        self.lengths, self.batch_size, self.generator = np.asarray(lengths), batch_size, generator
        self.shuffle, self.pool = shuffle, pool

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        n, bs = len(self.lengths), self.batch_size
        idx = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
        batches = []
        for s in range(0, n, bs * self.pool):
            chunk = idx[s:s + bs * self.pool]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + bs].tolist() for i in range(0, len(chunk), bs)]
        order = torch.randperm(len(batches), generator=self.generator).tolist() if self.shuffle else range(len(batches))
        for i in order:
            yield batches[i]


class DictExamples:
    """A map-style dataset whose examples are dicts: ``(x, y)`` tuples become ``{"x", "y"}``; every example gets its
    ``index`` (per-example state: memory banks, replay buffers, pseudo-labels)."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.lengths = getattr(data, "lengths", None)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        kind = _kind(item)
        if kind == "pair":
            return {"x": item[0], "y": item[1], "index": i}
        return {**item, "index": i} if kind == "mapping" else {"x": item, "index": i}

    def __getitems__(self, indices: list[int]) -> Fetched:
        """Batched fetch (the DataLoader uses it when present): the examples as the dataset gives them, with their
        indices; :func:`collate` makes the dict batch (no dict per example)."""
        many = getattr(self.data, "__getitems__", None)
        return Fetched(indices, many(indices) if many is not None else [self.data[i] for i in indices])


class Part:
    """Examples ``[lo, hi)`` of a map-style dataset (and their ``lengths``): one process's part of a validation set."""

    def __init__(self, data: Any, lo: int, hi: int) -> None:
        self.data, self.lo, self.hi = data, lo, hi
        lengths = getattr(data, "lengths", None)
        self.lengths = None if lengths is None else np.asarray(lengths)[lo:hi]

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.data[self.lo + i]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        many = getattr(self.data, "__getitems__", None)
        moved = [self.lo + i for i in indices]
        return many(moved) if many is not None else [self.data[i] for i in moved]


def _kind(item: Any) -> str:
    """How an example becomes a dict: an ``(x, y)`` ``pair``, a ``mapping`` (kept), or a ``single`` input."""
    if type(item) is tuple and len(item) == 2:  # the common case first: no ABC checks
        return "pair"
    if isinstance(item, Mapping):
        return "mapping"
    return "pair" if isinstance(item, (tuple, list)) and len(item) == 2 else "single"


class Fetched:
    """A batch's raw examples and their indices, on the way to :func:`collate`."""

    __slots__ = ("indices", "items")

    def __init__(self, indices: list[int], items: list[Any]) -> None:
        self.indices, self.items = list(indices), items


def collate(batch: Any) -> Any:
    """``(x, y)`` examples -> ``{"x", "y", "index"}``; dict examples -> their collated dict plus ``index``."""
    import torch
    from torch.utils.data import default_collate

    if not isinstance(batch, Fetched):
        return default_collate(batch)
    items, index = batch.items, torch.from_numpy(np.array(batch.indices, dtype=np.int64))
    kind = _kind(items[0]) if items else "single"
    if kind == "pair":
        x, y = default_collate(items)
        return {"x": x, "y": y, "index": index}
    return {**default_collate(items), "index": index} if kind == "mapping" else {"x": default_collate(items),
                                                                                   "index": index}


def loader(data: Any, batch_size: int, num_workers: int, generator: Any = None, shuffle: bool = False,
           shard: tuple[int, int] | None = None) -> Any:
    """A DataLoader of dict batches (length-grouped when the data has ``lengths``). ``shard=(rank, size)``: each
    batch cut across ``size`` processes (:class:`ShardedBatches`), this process's part; the same batches, in the same
    order, drawing the same random numbers as one process."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    ds = data if isinstance(data, DictExamples) else DictExamples(data)
    if ds.lengths is not None:
        batches = LengthGroupedBatches(ds.lengths, batch_size, generator, shuffle)
        return DataLoader(ds, batch_sampler=batches if shard is None else ShardedBatches(batches, *shard),
                          num_workers=num_workers, collate_fn=collate)
    if shard is None:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator if shuffle else None,
                          num_workers=num_workers, drop_last=False, collate_fn=collate)
    # what DataLoader(shuffle=True, generator=g) builds, then cut; the loader keeps g, whence its iterator draws its
    # base seed before the sampler's permutation, as in one process
    order = RandomSampler(ds, generator=generator) if shuffle else SequentialSampler(ds)
    return DataLoader(ds, batch_sampler=ShardedBatches(BatchSampler(order, batch_size, drop_last=False), *shard),
                      generator=generator if shuffle else None, num_workers=num_workers, collate_fn=collate)


class ShardedBatches:
    """One process's part of each batch of ``batches`` (a batch sampler): of a batch of ``n`` examples, rank ``r``
    of ``size`` takes its contiguous share (``n // size`` examples, the first ``n % size`` ranks one more). A rank
    whose share is empty (a last batch smaller than ``size``) gets the batch's first example to keep step with the
    others, its loss weighted 0. ``sizes``: ``(share, n)`` of each batch handed out, in order, for the loop's loss
    weights (the sampler runs ahead of the batches when workers prefetch)."""

    def __init__(self, batches: Any, rank: int, size: int) -> None:
        self.batches, self.rank, self.size = batches, rank, size
        self.sizes: deque[tuple[int, int]] = deque()

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.batches:
            b = list(b)
            lo, hi = split(len(b), self.rank, self.size)
            self.sizes.append((hi - lo, len(b)))
            yield b[lo:hi] or b[:1]


def epoch_generator(seed: int, epoch: int, stream: int = 0, cycle: int = 0) -> Any:
    import torch

    g = torch.Generator()
    # stream 0, cycle 0 keeps the seed the single-stream loop always used: same shuffles, same results
    g.manual_seed(seed * 1_000_003 + epoch + 7_919 * stream + 104_729 * cycle)
    return g


def streams(data: Any) -> dict[str, Any] | None:
    """``{"name": dataset, ...}`` for paired streams, None for one dataset."""
    if isinstance(data, Mapping):
        if not data:
            raise TransferlabError("no data streams: pass a dataset or {'name': dataset, ...}")
        return dict(data)
    return None


def epoch_batches(data: Any, batch_size: int, num_workers: int, seed: int, epoch: int,
                  shard: tuple[int, int] | None = None) -> Iterator[tuple[Any, tuple[int, int] | None]]:
    """One epoch of shuffled batches, each with its share (None without ``shard``; else this process's examples and
    the whole batch's, of the first stream); with paired streams, ``{"name": batch, ...}`` per step, the first
    stream defining the epoch and the others cycled (each new pass reshuffled by its own seed)."""
    named = streams(data)
    if named is None:
        first = loader(data, batch_size, num_workers, epoch_generator(seed, epoch), shuffle=True, shard=shard)
        for b in first:
            yield b, _share(first)
        return
    names = list(named)
    first = loader(named[names[0]], batch_size, num_workers, epoch_generator(seed, epoch), shuffle=True, shard=shard)
    others = {n: _cycle(named[n], batch_size, num_workers, seed, epoch, k, shard)
              for k, n in enumerate(names[1:], 1)}
    for b in first:
        yield {names[0]: b, **{n: next(it) for n, it in others.items()}}, _share(first)


def _share(batches: Any) -> tuple[int, int] | None:
    sampler = batches.batch_sampler
    return sampler.sizes.popleft() if isinstance(sampler, ShardedBatches) else None


def _cycle(data: Any, batch_size: int, num_workers: int, seed: int, epoch: int, stream: int,
           shard: tuple[int, int] | None) -> Iterator[Any]:
    cycle = 0
    while True:
        empty = True
        for b in loader(data, batch_size, num_workers, epoch_generator(seed, epoch, stream, cycle), shuffle=True,
                        shard=shard):
            empty = False
            yield b
        if empty:
            raise TransferlabError(f"data stream {stream} is empty: every paired stream needs examples")
        cycle += 1


def num_batches(data: Any, batch_size: int) -> int:
    named = streams(data)
    first = next(iter(named.values())) if named is not None else data
    return math.ceil(len(first) / batch_size)


def batch_size_of(batch: Any) -> int:
    """Examples in a batch: the length of its first tensor (the first stream's, for paired streams)."""
    if isinstance(batch, dict):
        for v in batch.values():
            n = batch_size_of(v)
            if n:
                return n
        return 0
    shape = getattr(batch, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    if isinstance(batch, (list, tuple)):
        return len(batch)
    return 0


def to_device(batch: Any, device: Any) -> Any:
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    to = getattr(batch, "to", None)
    return batch if to is None else to(device, non_blocking=True)
