"""safetensors written tensor by tensor: the header (every name, dtype and shape) first, then each tensor's bytes as
it is computed, so merging never holds the whole output in memory. ``patch`` rewrites single entries afterwards (TIES
resolves a few signs only once every tensor has been seen). The file is the standard format: safetensors loads it.
``MappedFile`` is the reading side for the weighted-sum path: a file mapped, one tensor's pages at a time."""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
           "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
SUPPORTED_DTYPES = tuple(_DTYPES)


def dtype_code(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "")
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"safetensors cannot hold {name}") from None


class SafetensorsWriter:
    """``SafetensorsWriter(path, [(name, dtype, shape), ...], metadata)``; then ``write(name, tensor)`` in that order."""

    def __init__(self, path: str | Path, entries: list[tuple[str, Any, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None) -> None:
        import torch

        header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
        self._layout: dict[str, tuple[int, Any, tuple[int, ...]]] = {}
        self._order = [e[0] for e in entries]
        off = 0
        for name, dtype, shape in entries:
            nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": dtype_code(dtype), "shape": list(shape), "data_offsets": [off, off + nbytes]}
            self._layout[name] = (off, dtype, tuple(shape))
            off += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._base = 8 + len(raw)
        self._next = 0
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._fh.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, name: str, tensor: Any) -> None:
        if self._next >= len(self._order) or self._order[self._next] != name:
            raise ValueError(f"tensors must be written in header order; got {name}")
        _, dtype, shape = self._layout[name]
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ValueError(f"{name}: expected {dtype} {shape}, got {tensor.dtype} {tuple(tensor.shape)}")
        self._fh.write(_bytes(tensor))
        self._next += 1

    def patch(self, name: str, flat_index: Any, values: Any) -> None:
        """Overwrite entries ``flat_index`` of an already written tensor with ``values`` (reads the tensor's bytes
        once, patches them in memory, writes them once)."""
        import torch

        off, dtype, shape = self._layout[name]
        n = int(np.prod(shape, dtype=np.int64))
        size = torch.empty((), dtype=dtype).element_size()
        self._fh.flush()
        idx = np.asarray(flat_index, dtype=np.int64).reshape(-1)
        if len(idx) * 64 < n:  # a few entries (TIES's sign ties): write just them, in place, no read
            vals = torch.as_tensor(values).to(dtype).reshape(-1).contiguous()
            raw_vals = vals.view(torch.uint8).numpy().reshape(len(idx), size) if len(idx) else None
            fd = self._fh.fileno()
            for i, j in enumerate(idx.tolist()):
                os.pwrite(fd, raw_vals[i].tobytes(), self._base + off + j * size)
            return
        with open(self._fh.name, "rb") as rd:
            rd.seek(self._base + off)
            raw = bytearray(rd.read(n * size))
        t = torch.frombuffer(raw, dtype=dtype) if n else torch.empty(0, dtype=dtype)
        t[torch.as_tensor(np.asarray(flat_index).reshape(-1), dtype=torch.long)] = \
            torch.as_tensor(values).to(dtype).reshape(-1)
        self._fh.seek(self._base + off)
        self._fh.write(_bytes(t))
        self._fh.seek(0, os.SEEK_END)

    def close(self) -> None:
        if self._next != len(self._order):
            self._fh.close()
            raise ValueError(f"only {self._next} of {len(self._order)} tensors were written")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def abort(self) -> None:
        self._fh.close()


def _bytes(t: Any) -> memoryview:
    import torch

    t = t.detach().cpu().contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def overwrite_tensors(path: str | Path, tensors: dict[str, Any]) -> None:
    """Replace whole tensors of a safetensors file in place (same names, dtypes and shapes)."""
    with open(path, "r+b") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        for name, t in tensors.items():
            e = header.get(name)
            if e is None or e["dtype"] != dtype_code(t.dtype) or e["shape"] != list(t.shape):
                raise ValueError(f"{name}: not a {t.dtype} {tuple(t.shape)} tensor of {path}")
            fh.seek(8 + n + e["data_offsets"][0])
            fh.write(_bytes(t))
        fh.flush()
        os.fsync(fh.fileno())


class MappedFile:
    """A safetensors file mapped copy-on-write (tensors over it are writable; nothing reaches the file) and each
    tensor's byte span in it. :meth:`drop` returns a span's pages (``MADV_DONTNEED``): the resident memory stays one
    tensor per file, where a plain mapping keeps every page read until it is closed."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
            self.map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        self.spans = {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1]) for k, v in header.items()
                      if k != "__metadata__"}

    def drop(self, begin: int, end: int) -> None:
        page = mmap.PAGESIZE
        start = begin // page * page
        if end > start and hasattr(mmap, "MADV_DONTNEED"):
            self.map.madvise(mmap.MADV_DONTNEED, start, end - start)
