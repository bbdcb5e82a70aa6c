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


CONFIG_HELP = ("A YAML file of this command's options (their names, with - or _: `epochs: 3`, `image-size: 64`); "
               "flags given on the command line win; unknown keys are refused.")
WORKERS_HELP = "DataLoader worker processes for training batches (default 0: in the main process)."
AUGMENT_HELP = ("Image augmentation of the training split: default (random resized crops and flips), light (flips "
                "only), none.")
LOG_DIR_HELP = ("Write each epoch's values to DIR/train_log.csv and, with the tensorboard package, TensorBoard event "
                "files (tensorboard --logdir DIR).")
DEVICES_HELP = ("Train on N processes of one run (torch DDP: gloo on the CPU, one GPU each on CUDA); under torchrun "
                "leave it unset. The batch size stays the global batch.")


def runtime_options(cmd: Callable[..., Any], devices: bool = False) -> Callable[..., Any]:
    """``cmd`` with ``--device``, ``--precision`` and ``--threads`` (those it does not define itself) and, for a
    command that trains (``devices``), ``--devices``, run inside that runtime. Under torchrun, processes other than
    rank 0 print nothing (rank 0 writes the outputs and the summary)."""
    sig = inspect.signature(cmd)
    own = set(sig.parameters)
    defaults = {n: getattr(p.default, "default", p.default) for n, p in sig.parameters.items()}
    extra = [(n, o) for n, o in (
        ("config", typer.Option(None, "--config", help=CONFIG_HELP)),
        ("device", typer.Option("auto", "--device", help=DEVICE_HELP)),
        ("precision", typer.Option(None, "--precision", help=PRECISION_HELP)),
        ("threads", typer.Option(None, "--threads", min=1, help=THREADS_HELP)),
        *((("devices", typer.Option(None, "--devices", min=1, help=DEVICES_HELP)),
           ("num_workers", typer.Option(None, "--num-workers", min=0, help=WORKERS_HELP)),
           ("augment", typer.Option(None, "--augment", help=AUGMENT_HELP)),
           ("log_dir", typer.Option(None, "--log-dir", help=LOG_DIR_HELP))) if devices else ()),
    ) if n not in own]

    @functools.wraps(cmd)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import contextlib
        import os

        from .._runtime import run_controls, runtime

        chosen = {n: kwargs.pop(n, None) for n, _ in extra}
        if chosen.get("config"):
            kwargs = with_config(cmd, chosen.pop("config"), kwargs, defaults)
            for n in ("device", "precision", "threads", "devices", "num_workers", "augment",
                      "log_dir"):  # the file may set these too
                if n in kwargs and n not in own:
                    chosen[n] = chosen.get(n) if chosen.get(n) not in (None, "auto") else kwargs.pop(n)
                    kwargs.pop(n, None)
        quiet = contextlib.redirect_stdout(open(os.devnull, "w")) if os.environ.get("RANK", "0") != "0" \
            else contextlib.nullcontext()
        with quiet, runtime(chosen.get("device"), chosen.get("precision"), chosen.get("threads"),
                            chosen.get("devices")), \
                run_controls(chosen.get("num_workers"), chosen.get("augment"), chosen.get("log_dir")):
            return cmd(*args, **kwargs)

    params = list(sig.parameters.values())
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o,
                                 annotation=int if n in ("threads", "devices", "num_workers") else str)
               for n, o in extra]
    wrapper._runtime_extra = [n for n, _ in extra]  # type: ignore[attr-defined]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def config_option(cmd: Callable[..., Any]) -> Callable[..., Any]:
    """``cmd`` with ``--config`` alone, for commands that take their device options themselves (the benches) or
    compute nothing (``data info``): its keys are the command's own options only."""
    sig = inspect.signature(cmd)
    if "config" in sig.parameters:
        return cmd
    defaults = {n: getattr(p.default, "default", p.default) for n, p in sig.parameters.items()}

    @functools.wraps(cmd)
    def wrapper(*args: Any, config: str | None = None, **kwargs: Any) -> Any:
        if config:
            kwargs = with_config(cmd, config, kwargs, defaults, runtime_keys=False)
        return cmd(*args, **kwargs)

    option = typer.Option(None, "--config", help=CONFIG_HELP)
    wrapper.__signature__ = sig.replace(parameters=[  # type: ignore[attr-defined]
        *sig.parameters.values(), inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=option,
                                                    annotation=str)])
    return wrapper


def with_config(cmd: Callable[..., Any], path: str, given: dict[str, Any], defaults: dict[str, Any],
                runtime_keys: bool = True) -> dict[str, Any]:
    """``given`` (the command's arguments) completed from the YAML file ``path``: a key of the file sets an argument
    left at its default; unknown keys and values of the wrong type are one error naming the key. ``runtime_keys``:
    the file may also set the runtime options (``device``, ``threads``, ...) the command does not define itself."""
    from pathlib import Path

    import yaml
    from pydantic import ConfigDict, ValidationError, create_model

    from ..errors import TransferlabError

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TransferlabError(f"cannot read the config file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise TransferlabError(f"{path}: a config file holds a mapping of option names to values")
    runtime = {"device": (str | None, None), "precision": (str | None, None), "threads": (int | None, None),
               "devices": (int | None, None), "num_workers": (int | None, None), "augment": (str | None, None),
               "log_dir": (str | None, None)}
    import typing

    hints = typing.get_type_hints(cmd)
    fields: dict[str, Any] = {}
    for n in inspect.signature(cmd).parameters:
        ann = hints.get(n, Any)
        fields[n] = (Any if ann is Any else ann | None, None)
    fields.update({k: v for k, v in runtime.items() if k not in fields and runtime_keys})
    model = create_model("RunConfig", __config__=ConfigDict(extra="forbid"), **fields)
    # a key is an option's name as the command line spells it (--json -> as_json) or its parameter's name
    flags = {d.lstrip("-").replace("-", "_"): n for n, p in inspect.signature(cmd).parameters.items()
             for d in (getattr(p.default, "param_decls", None) or ()) if d.startswith("--")}
    data = {flags.get(k, k): v for k, v in ((str(k).replace("-", "_").lstrip("_"), v) for k, v in raw.items())}
    try:
        checked = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        names = {n: f for f, n in flags.items()}  # the command line's spelling of each parameter
        raise TransferlabError(f"{path}: {key}: {first['msg']} (the keys are this command's options: "
                               f"{', '.join(sorted(names.get(n, n).replace('_', '-') for n in fields))})") from None
    out = dict(given)
    for k in data:
        v = getattr(checked, k)
        if k not in out or out[k] == defaults.get(k) or out[k] is None:
            out[k] = v
    return out
