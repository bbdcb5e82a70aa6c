"""``--device``, ``--precision`` and ``--threads`` on every command that computes: one decorator, applied where the
commands are registered (cli/_app.py); the command then runs inside :func:`transferlab._runtime.runtime`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

DEVICE_HELP = ("Where to compute: auto (CUDA when available, else the CPU), cpu, cuda, cuda:N, mps. A device this "
               "machine lacks is an error.")
PRECISION_HELP = ("Numeric precision of training and feature extraction: fp32, bf16 (CPU and GPU), fp16 (GPU). "
                  "Default: fp32, except training on CUDA in fp16 mixed precision (--precision fp32 turns it off).")
THREADS_HELP = ("CPU threads for torch and BLAS (default: every core; on a busy machine fewer threads are often "
                "faster).")


DEVICES_HELP = ("Train on N processes of one run (torch DDP: gloo on the CPU, one GPU each on CUDA); under torchrun "
                "leave it unset. The batch size stays the global batch.")


def runtime_options(cmd: Callable[..., Any], devices: bool = False) -> Callable[..., Any]:
    """``cmd`` with ``--device``, ``--precision`` and ``--threads`` (those it does not define itself) and, for a
    command that trains (``devices``), ``--devices``, run inside that runtime. Under torchrun, processes other than
    rank 0 print nothing (rank 0 writes the outputs and the summary)."""
    sig = inspect.signature(cmd)
    own = set(sig.parameters)
    extra = [(n, o) for n, o in (
        ("device", typer.Option("auto", "--device", help=DEVICE_HELP)),
        ("precision", typer.Option(None, "--precision", help=PRECISION_HELP)),
        ("threads", typer.Option(None, "--threads", min=1, help=THREADS_HELP)),
        *((("devices", typer.Option(None, "--devices", min=1, help=DEVICES_HELP)),) if devices else ()),
    ) if n not in own]

    @functools.wraps(cmd)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import contextlib
        import os

        from .._runtime import runtime

        chosen = {n: kwargs.pop(n, None) for n, _ in extra}
        quiet = contextlib.redirect_stdout(open(os.devnull, "w")) if os.environ.get("RANK", "0") != "0" \
            else contextlib.nullcontext()
        with quiet, runtime(chosen.get("device"), chosen.get("precision"), chosen.get("threads"),
                            chosen.get("devices")):
            return cmd(*args, **kwargs)

    params = list(sig.parameters.values())
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o,
                                 annotation=int if n in ("threads", "devices") else str) for n, o in extra]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper
