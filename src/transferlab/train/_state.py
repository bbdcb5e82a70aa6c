"""Seeds, random-generator state, and the checkpoint every epoch writes (all modules, optimiser, schedule, scaler,
generators, the objective's state, the best weights so far): a killed run resumes to identical weights."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open, mark_owned, write_json_atomic
from .._version import __version__
from ..errors import TransferlabError
from ._config import TrainConfig, TrainResult

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
STATE = "train_state.json"


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    import torch

    py = random.getstate()
    npy = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": list(py[1]), "python_gauss": py[2],
          "numpy": npy[1].tolist(), "numpy_pos": int(npy[2]), "numpy_gauss": [int(npy[3]), float(npy[4])]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), st["python_gauss"]))
    np.random.set_state(("MT19937", np.array(st["numpy"], dtype=np.uint32), st["numpy_pos"], *st["numpy_gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(ckdir: Path, cfg: TrainConfig, objective: Any, modules: Mapping[str, Any], opt: Any, sched: Any,
                    scaler: Any, result: TrainResult, epoch: int, best_state: dict[str, Any] | None,
                    rng_ranks: list[dict[str, Any]] | None = None) -> None:
    """``rng_ranks``: every process's generators in a distributed run (rank 0 writes; ``rng`` is its own, what one
    process resumes with)."""
    import torch

    payload = {"epoch": epoch, "modules": {n: m.state_dict() for n, m in modules.items()},
               "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
               "rng": rng_ranks[0] if rng_ranks else rng_state(), "best": best_state,
               "objective": objective.state_dict()}
    if rng_ranks:
        payload["rng_ranks"] = rng_ranks
    ckdir.mkdir(parents=True, exist_ok=True)
    mark_owned(ckdir, [CHECKPOINT, STATE])  # first: proves the folder transferlab's (resumed, or replaced by --overwrite)
    with atomic_open(ckdir / CHECKPOINT, "wb") as fh:
        torch.save(payload, fh)
    write_json_atomic(ckdir / STATE, {
        "transferlab_version": __version__, "config": cfg.model_dump(), "objective": _jsonable(objective.identity()),
        "config_fingerprint": cfg.fingerprint(objective.identity()), "epoch": epoch, "history": result.history,
        "best_epoch": result.best_epoch, "best_value": result.best_value, "selected_by": result.selected_by,
        "train_seconds": result.train_seconds})


def _jsonable(d: Any) -> Any:
    return json.loads(json.dumps(d, default=str))


def read_checkpoint(ckdir: Path) -> tuple[str, bytes] | None:
    """The checkpoint files' contents (``train_state.json``'s text, ``checkpoint.pt``'s bytes), None without a
    checkpoint: what rank 0 reads and hands to every process of a distributed run."""
    if not (ckdir / CHECKPOINT).is_file():
        return None
    try:
        state = (ckdir / STATE).read_text()
    except OSError:
        state = ""
    return state, (ckdir / CHECKPOINT).read_bytes()


def _expected_fingerprint(state: dict[str, Any], cfg: TrainConfig, objective: Any) -> str:
    """The fingerprint ``state`` must hold to be resumed: a checkpoint written before the data's identity was
    recorded (no ``data_fingerprint`` in its config) is checked without it."""
    if cfg.data_fingerprint is not None and (state.get("config") or {}).get("data_fingerprint") is None:
        cfg = cfg.model_copy(update={"data_fingerprint": None})
    return cfg.fingerprint(objective.identity())


def resume(ckdir: Path, cfg: TrainConfig, objective: Any, modules: Mapping[str, Any], opt: Any, sched: Any,
           scaler: Any, result: TrainResult, files: tuple[str, bytes] | None = None, rank: int = 0,
           size: int = 1) -> tuple[int, dict[str, Any] | None]:
    """Load the checkpoint in ``ckdir`` (or its ``files``, as :func:`read_checkpoint` read them) into the run;
    process ``rank`` of ``size`` takes its own generators' state when the checkpoint was written by as many
    processes, else rank 0's."""
    import io

    import torch

    state_text, blob = files if files is not None else (None, None)
    try:
        state = json.loads(state_text if state_text is not None else (ckdir / STATE).read_text())
    except (OSError, ValueError):
        raise TransferlabError(f"{ckdir} holds a checkpoint but no readable {STATE}; remove the directory to start "
                               "over") from None
    if state.get("config_fingerprint") != _expected_fingerprint(state, cfg, objective):
        old_cfg, old_obj = state.get("config", {}), state.get("objective") or {}
        diff = {k: (old_cfg.get(k), v) for k, v in cfg.model_dump().items()
                if old_cfg.get(k) != v and k not in ("num_workers", "budget_seconds")}
        new_obj = _jsonable(objective.identity())
        diff.update({f"objective.{k}": (old_obj.get(k), v) for k, v in new_obj.items() if old_obj.get(k) != v})
        diff.update({f"objective.{k}": (v, None) for k, v in old_obj.items() if k not in new_obj})
        if "data_fingerprint" in diff and old_cfg.get("data_fingerprint") is not None:
            raise TransferlabError(
                f"cannot resume in {ckdir}: its checkpoint was trained on other data (the training or validation "
                "examples, their labels or their quality column changed since); use another output directory, or "
                "--overwrite to start over")
        raise TransferlabError(
            f"cannot resume in {ckdir}: it was written with a different training config "
            f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items()) or 'another version'}); use another "
            "output directory or the same settings")
    try:  # weights_only: a checkpoint that needs pickle to load is refused, never run
        payload = torch.load(io.BytesIO(blob) if blob is not None else ckdir / CHECKPOINT, map_location="cpu",
                             weights_only=True)
    except Exception as exc:  # truncated, damaged, or a pickle that is not ours
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TransferlabError(f"cannot resume from {ckdir / CHECKPOINT}: it is damaged or not a transferlab "
                               f"checkpoint ({why[:160]}); remove {ckdir} to start the run again") from None
    if not isinstance(payload, dict):
        raise TransferlabError(f"cannot resume from {ckdir / CHECKPOINT}: not a transferlab checkpoint; remove "
                               f"{ckdir} to start the run again")
    saved = payload.get("modules")
    if saved is None or set(saved) != set(modules):
        raise TransferlabError(f"cannot resume in {ckdir}: its checkpoint holds modules "
                               f"{sorted(saved or [])}, this run has {sorted(modules)}")
    for n, m in modules.items():
        m.load_state_dict(saved[n])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    objective.load_state_dict(payload.get("objective") or {})
    ranks = payload.get("rng_ranks")
    set_rng_state(ranks[rank] if ranks is not None and len(ranks) == size else payload["rng"])
    result.history = list(state["history"])
    result.best_epoch, result.best_value = state["best_epoch"], state.get("best_value")
    result.selected_by = state.get("selected_by")
    result.epochs_run = int(payload["epoch"])
    result.train_seconds = float(state.get("train_seconds", 0.0))
    log.info("resuming from %s after epoch %d", ckdir, payload["epoch"])
    return int(payload["epoch"]), payload["best"]
