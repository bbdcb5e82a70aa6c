"""Where and how computation runs: the device, the numeric precision and the CPU thread limit — one owner.

Every public entry point takes ``device=`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; ``auto``: CUDA when
available, else the CPU) and, where it computes in bulk, ``precision=`` (``fp32``, ``bf16``, ``fp16``) and
``threads=``; it runs its work inside :func:`runtime`, and the one training loop, the one inference loop and feature
extraction read :func:`current_device` / :func:`current_precision` there, so nothing is threaded through a dozen
private functions. Outside any :func:`runtime`, the device is ``auto`` and the precision ``fp32``: what transferlab
did before these options existed."""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from typing import Any

from .errors import TransferlabError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")

_device: contextvars.ContextVar[str | None] = contextvars.ContextVar("transferlab_device", default=None)
_precision: contextvars.ContextVar[str | None] = contextvars.ContextVar("transferlab_precision", default=None)
_devices: contextvars.ContextVar[int | None] = contextvars.ContextVar("transferlab_devices", default=None)
#: run controls of training (``--num-workers``, ``--augment``, ``--log-dir``): read by the loop and the image datasets
_controls: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar("transferlab_controls",
                                                                                       default=())
AUGMENT = ("none", "light", "default")


def check_device(spec: str | None) -> str:
    """``spec`` checked by its form only (no torch import): ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    s = (spec or "auto").strip().lower()
    if s in ("auto", "cpu", "cuda", "mps") or (s.startswith("cuda:") and s[5:].isdigit()):
        return s
    raise TransferlabError(f"unknown device {spec!r}: choose auto, cpu, cuda, cuda:N (a GPU's index) or mps")


def check_precision(precision: str | None) -> str:
    p = (precision or "fp32").strip().lower()
    if p not in PRECISIONS:
        raise TransferlabError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    return p


def resolve_device(spec: str | None = None) -> Any:
    """The ``torch.device`` of ``spec`` (default: the current runtime's, else ``auto``). A device this machine does
    not have is one clear error."""
    import torch

    s = check_device(spec if spec is not None else _device.get())
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s.startswith("cuda"):
        if not torch.cuda.is_available():
            why = ("this torch is a CPU build" if torch.version.cuda is None else
                   f"torch was built for CUDA {torch.version.cuda}, but no GPU is visible: check the driver and "
                   "CUDA_VISIBLE_DEVICES")
            raise TransferlabError(f"--device {s}: CUDA is not available here ({why}); use --device cpu, or "
                                   "--device auto to take a GPU only where there is one")
        index = int(s[5:]) if ":" in s else 0
        if index >= torch.cuda.device_count():
            raise TransferlabError(f"--device {s}: this machine has {torch.cuda.device_count()} GPU(s) "
                                   f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        return torch.device(s)
    if s == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise TransferlabError("--device mps: Apple's Metal backend is not available here; use --device cpu")
        return torch.device("mps")
    return torch.device("cpu")


def current_device() -> Any:
    """The device of the innermost :func:`runtime` (``auto`` outside one)."""
    return resolve_device(None)


def current_precision() -> str:
    """The precision of the innermost :func:`runtime` (``fp32`` outside one)."""
    return check_precision(_precision.get())


def controls() -> dict[str, Any]:
    """The run controls in force: ``num_workers`` (DataLoader workers of training), ``augment`` (images: ``none``,
    ``light``: flips only, ``default``: random resized crops and flips), ``log_dir`` (per-epoch CSV and, where the
    tensorboard package is installed, TensorBoard event files)."""
    return dict(_controls.get())


@contextlib.contextmanager
def run_controls(num_workers: int | None = None, augment: str | None = None,
                 log_dir: str | None = None) -> Iterator[None]:
    """Set the run controls for the block (None keeps the enclosing value)."""
    if augment is not None and augment not in AUGMENT:
        raise TransferlabError(f"unknown augmentation {augment!r}: choose {', '.join(AUGMENT)}")
    if num_workers is not None and num_workers < 0:
        raise TransferlabError(f"--num-workers must be >= 0, got {num_workers}")
    new = {**dict(_controls.get()), **{k: v for k, v in (("num_workers", num_workers), ("augment", augment),
                                                         ("log_dir", log_dir)) if v is not None}}
    token = _controls.set(tuple(new.items()))
    try:
        yield
    finally:
        _controls.reset(token)


def requested_devices() -> int | None:
    """How many processes a runtime asked one training run to use (``--devices N``), or None."""
    return _devices.get()


def requested_precision() -> str | None:
    """The precision a runtime asked for, or None when none did (then each computation keeps its own default:
    training on CUDA in fp16 mixed precision, everything else in fp32)."""
    p = _precision.get()
    return None if p is None else check_precision(p)


def autocast(device: Any, precision: str | None = None) -> Any:
    """The autocast context of ``precision`` (default: the current one) on ``device``: none for fp32; bf16 on the
    CPU and on GPUs; fp16 on GPUs (on the CPU, torch's fp16 autocast is slower than fp32 and loses range: refused)."""
    import torch

    p = check_precision(precision if precision is not None else _precision.get())
    if p == "fp32":
        return contextlib.nullcontext()
    if p == "fp16" and device.type == "cpu":
        raise TransferlabError("--precision fp16 runs on GPUs; on the CPU use bf16 (or fp32)")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)


@contextlib.contextmanager
def runtime(device: str | None = None, precision: str | None = None, threads: int | None = None,
            devices: int | None = None) -> Iterator[None]:
    """Run the block on ``device`` (checked now: a missing GPU fails before any work) at ``precision`` with at most
    ``threads`` CPU threads (torch and BLAS; None: torch's default, every core); ``devices``: a training run in it
    uses that many processes (``transferlab.train.on_devices``). ``None`` keeps the enclosing runtime's value."""
    if device is not None and check_device(device) != "auto":  # auto always resolves: no torch import for it
        resolve_device(device)  # fail now, not after loading the data
    if precision is not None:
        check_precision(precision)
    if threads is not None and threads < 1:
        raise TransferlabError(f"--threads must be >= 1, got {threads}")
    if devices is not None and devices < 1:
        raise TransferlabError(f"--devices must be >= 1, got {devices}")
    tokens = [(_device, _device.set(device)) if device is not None else None,
              (_precision, _precision.set(precision)) if precision is not None else None,
              (_devices, _devices.set(devices)) if devices is not None else None]
    try:
        with thread_limit(threads):
            yield
    finally:
        for t in reversed(tokens):
            if t is not None:
                t[0].reset(t[1])


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Limit torch intra-op threads and BLAS/OpenMP threads (threadpoolctl) for the duration. torch is configured
    only once it is imported (a fully cached ranking never imports it): backbones call
    :func:`apply_thread_limit` before their first forward pass."""
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits

    with torch_threads(threads), threadpool_limits(limits=threads):
        yield


_TORCH_THREADS: list[int] = []  # stack of requested torch thread limits


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Request ``n`` torch threads for the duration; applied now if torch is loaded, else on first use."""
    _TORCH_THREADS.append(n)
    old = None
    if "torch" in sys.modules:
        old = sys.modules["torch"].get_num_threads()
        sys.modules["torch"].set_num_threads(n)
    try:
        yield
    finally:
        _TORCH_THREADS.pop()
        if old is not None:
            sys.modules["torch"].set_num_threads(old)


def requested_threads() -> int | None:
    """The innermost requested thread limit (None: no limit): for runtimes other than torch (ONNX Runtime)."""
    return _TORCH_THREADS[-1] if _TORCH_THREADS else None


def apply_thread_limit() -> None:
    """Apply the innermost requested torch thread limit (call after importing torch, before computing)."""
    if _TORCH_THREADS:
        import torch

        if torch.get_num_threads() != _TORCH_THREADS[-1]:
            torch.set_num_threads(_TORCH_THREADS[-1])


def in_runtime(fn: Any) -> Any:
    """Give the public function ``fn`` the keyword arguments ``device``, ``precision`` and ``threads`` (see
    :func:`runtime`) and run it inside that runtime: one decorator, instead of the three threaded through every
    capability's private functions."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, device: str | None = None, precision: str | None = None, threads: int | None = None,
                **kwargs: Any) -> Any:
        with runtime(device, precision, threads):
            return fn(*args, **kwargs)

    with_keywords(wrapper, fn, device="str | None", precision="str | None", threads="int | None")
    wrapper.__doc__ = (fn.__doc__ or "") + ("\n\n    ``device`` (auto, cpu, cuda, cuda:N, mps), ``precision`` (fp32, bf16, "
                                            "fp16), ``threads``: where and how it computes (transferlab._runtime).")
    return wrapper


def with_keywords(wrapper: Any, fn: Any, **annotations: str) -> None:
    """Give the decorator ``wrapper`` of ``fn`` the signature of ``fn`` plus keyword-only arguments (default None),
    before its ``**kwargs``: what ``help()``, the docs and the option checks see."""
    import inspect

    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
             for n, a in annotations.items()]
    var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    wrapper.__signature__ = sig.replace(parameters=rest + extra + var_kw)
