"""One training run on several processes (torch.distributed): the one owner of process groups.

A run is distributed when torch's launcher contract is in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``): ``torchrun`` sets it, and so does :func:`spawn` for a run started with
``devices=N`` (:func:`on_devices`). The group starts lazily, on the first collective (gloo on the CPU, nccl on CUDA,
one GPU per process: ``cuda:LOCAL_RANK``). Every process runs the whole capability (data, model, training,
evaluation); the loop shards each global batch across the processes and averages gradients, rank 0 alone
checkpoints and writes the output (``models.RunOutput`` reads the same environment: ``models`` is below ``train``).

Gradients are averaged by one bucketed all-reduce per optimiser step rather than by wrapping the modules in
``DistributedDataParallel``: an objective calls its modules' other methods and attributes (``get_classifier()``,
``last_features``, a ``ModuleDict``'s items), which a DDP wrapper hides, and DDP's reducer all-reduces only
gradients of a forward that went through the wrapper. The arithmetic is DDP's (the mean of the per-process
gradients, computed after the local backward passes of an accumulation window, as ``no_sync`` does); what is lost
is DDP's overlap of communication with the backward pass.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import socket
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TransferlabError

log = logging.getLogger(__name__)
_BUCKET = 1 << 24  # elements per all-reduce / broadcast (64 MiB of float32)


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` in ``[0, size)``, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from the launcher's environment (one process: rank 0 of 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def is_main() -> bool:
    """Whether this process writes: rank 0, or the only process."""
    return world().main


def process_device(device: str | None = None) -> Any:
    """The ``torch.device`` this process trains on: ``device``, by default the current runtime's
    (:func:`transferlab._runtime.current_device`: CUDA when available, else the CPU); a distributed run on CUDA
    takes ``cuda:LOCAL_RANK`` for a plain ``cuda`` (one GPU per process)."""
    import torch

    from .._runtime import current_device

    dev = torch.device(device) if device is not None else current_device()
    w = world()
    if w.distributed and dev.type == "cuda" and dev.index is None:
        if w.local_rank >= torch.cuda.device_count():
            raise TransferlabError(f"process {w.rank} has LOCAL_RANK {w.local_rank} but this machine has "
                                   f"{torch.cuda.device_count()} GPU(s): start at most one process per GPU")
        return torch.device("cuda", w.local_rank)
    return dev


def init(device: Any = None) -> World:
    """Join the process group of a distributed run (once; nothing to do for one process): nccl when this process
    trains on CUDA, else gloo."""
    import torch
    import torch.distributed as dist

    w = world()
    if not w.distributed or dist.is_initialized():
        return w
    dev = device if device is not None else process_device()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    kw = {"device_id": dev} if dev.type == "cuda" else {}
    dist.init_process_group(backend, rank=w.rank, world_size=w.size, **kw)
    log.info("process %d of %d joined (%s)", w.rank, w.size, backend)
    return w


def barrier() -> None:
    """Wait for every process (nothing to do for one)."""
    if world().distributed:
        import torch.distributed as dist

        init()
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (pickled by torch.distributed: only between this run's processes)."""
    if not world().distributed:
        return obj
    import torch.distributed as dist

    init()
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    w = world()
    if not w.distributed:
        return [obj]
    import torch.distributed as dist

    init()
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def _buckets(tensors: Sequence[Any]) -> Iterable[list[Any]]:
    """Consecutive runs of ``tensors`` of one dtype and device, at most :data:`_BUCKET` elements each (one tensor
    larger than that is a bucket of its own)."""
    bucket: list[Any] = []
    size = 0
    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or t.device != bucket[0].device or size + t.numel() > _BUCKET):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


def average_gradients_(params: Sequence[Any]) -> None:
    """Replace each parameter's gradient by the mean over the processes (a parameter no process computed a gradient
    for keeps ``None``, as in one process; one that only some did counts zeros for the others)."""
    import torch
    import torch.distributed as dist

    w = world()
    if not w.distributed:
        return
    dev = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=dev)
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for bucket in _buckets([p.grad for p in live]):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= w.size
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_tensors_(tensors: Iterable[Any]) -> None:
    """Overwrite ``tensors`` with rank 0's (parameters at the start, batch-norm statistics after each epoch: what
    DDP's ``broadcast_buffers`` keeps in step)."""
    import torch
    import torch.distributed as dist

    if not world().distributed:
        return
    init()
    for bucket in _buckets([t for t in tensors if t.numel()]):
        flat = torch.cat([t.detach().reshape(-1) for t in bucket])
        dist.broadcast(flat, src=0)
        offset = 0
        with torch.no_grad():
            for t in bucket:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()


def split(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share ``[lo, hi)`` of ``n`` items: ``n // size`` each, the first ``n % size``
    ranks one more."""
    q, r = divmod(n, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)


# -- devices=N: transferlab starts the processes itself -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, size: int, port: int, threads: int | None, fn: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any], results: Any) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_WORLD_SIZE": str(size)})
    try:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        out = fn(*args, **kwargs)
        if rank == 0:
            results.put(("ok", pickle.dumps(out)))
    except BaseException as exc:  # noqa: B036 - handed to the parent, which re-raises it
        try:
            payload = pickle.dumps(exc)
        except Exception:
            payload = pickle.dumps(TransferlabError(f"{type(exc).__name__}: {exc}"))
        results.put(("error", payload, rank, traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def spawn(fn: Callable[..., Any], n: int, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
    """Run ``fn(*args, **kwargs)`` in ``n`` new processes that form one distributed run on this machine (a free
    port on localhost; the arguments and rank 0's result are pickled between this process and its children) and
    return rank 0's result. When a process fails the others are stopped and its exception is raised here. CPU
    threads are shared out (``cores // n`` each) unless ``OMP_NUM_THREADS`` says otherwise, as ``torchrun`` does."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    threads = None if os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 1) // n)
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, n, port, threads, fn, args, kwargs or {}, results))
             for r in range(n)]
    for p in procs:
        p.start()
    try:
        answer = _first_answer(procs, results)
        if answer[0] == "error":
            log.debug("process %d failed:\n%s", answer[2], answer[3])
            raise pickle.loads(answer[1])
        for p in procs:
            p.join()
        return pickle.loads(answer[1])
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()


def _first_answer(procs: list[Any], results: Any) -> tuple[Any, ...]:
    """Rank 0's result or the first error a process reports; a process that dies without a word is an error too."""
    import queue

    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            dead = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode not in (None, 0)]
            if not dead and not all(p.exitcode == 0 for p in procs):
                continue
        try:  # its message may still be on the way
            return results.get(timeout=0.5)
        except queue.Empty:
            pass
        if dead:
            r, code = dead[0]
            raise TransferlabError(f"process {r} of {len(procs)} died (exit code {code}) before finishing; the "
                                   "others were stopped")
        raise TransferlabError("every process ended and none returned a result")


def on_devices(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give the run function ``fn`` (fit, adapt, distill, continual's run: it takes ``progress``) the keyword argument
    ``devices``: ``devices=N`` (N > 1) runs it as N processes of one distributed run on this machine (:func:`spawn`;
    one per GPU on CUDA, else gloo on the CPU) and returns rank 0's result. Under ``torchrun`` every process runs
    ``fn`` and ``devices`` must be unset or the number of processes. Processes other than rank 0 draw no progress
    bars and log only errors."""

    @functools.wraps(fn)
    def run(*args: Any, devices: int | None = None, **kwargs: Any) -> Any:
        if devices is None:  # --devices N of the command line (transferlab._runtime)
            from .._runtime import requested_devices

            devices = requested_devices()
        if devices is not None and (not isinstance(devices, int) or isinstance(devices, bool) or devices < 1):
            raise TransferlabError(f"devices must be a whole number >= 1, got {devices!r}")
        w = world()
        if w.distributed:
            if devices not in (None, w.size):
                raise TransferlabError(f"devices={devices} but the launcher started {w.size} processes: leave "
                                       "devices unset under torchrun")
            _claim_gpu(w)
            if not w.main:
                kwargs["progress"] = False
                logging.getLogger("transferlab").setLevel(logging.ERROR)
            return fn(*args, **kwargs)
        if devices is None or devices == 1:
            return fn(*args, **kwargs)
        _check_devices(devices)
        return spawn(run, devices, args, kwargs)

    from .._runtime import with_keywords

    with_keywords(run, fn, devices="int | None")
    return run


def _claim_gpu(w: World) -> None:
    """Make ``cuda`` this process's GPU (``cuda:LOCAL_RANK``) before any work (features, evaluation) uses it."""
    import torch

    if torch.cuda.is_available() and w.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(w.local_rank)


def _check_devices(n: int) -> None:
    import torch

    if torch.cuda.is_available() and n > torch.cuda.device_count():
        raise TransferlabError(f"devices={n} but this machine has {torch.cuda.device_count()} GPU(s): one process "
                               "trains on one GPU")
