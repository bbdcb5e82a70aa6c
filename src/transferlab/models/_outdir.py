"""The output directory of a training run (fit, domain, ...): what may be replaced, and where the run checkpoints.

A fresh run checkpoints into ``OUT/checkpoints`` and resumes from it when rerun with the same arguments; an
``--overwrite`` run checkpoints into a fresh sibling, so the old output stays untouched until the new one is complete.
A directory is transferlab's only when markers transferlab wrote prove every entry in it
(:func:`transferlab._io.foreign_entries`): one holding anything else is never replaced nor resumed, whatever its
folders are called."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._io import OWNER_FILE, refuse_foreign, remove_stale_siblings, sibling_dir
from ..errors import TransferlabError


def claim_output(out: Path, identity: dict[str, Any], overwrite: bool, what: str = "fit") -> Path | None:
    """Refuse an output directory that holds something else; return where an ``overwrite`` run checkpoints (a fresh
    sibling directory, to be removed by the caller), or None for ``out/checkpoints`` (resumed when present).
    ``identity``: the card keys (``model``, ``method``) that make an existing output "this run"; ``what``: the run's
    name in messages."""
    from ._card import card_file
    from ._paths import recorded_reference

    if out.exists() and not out.is_dir():
        raise TransferlabError(f"--out {out} is a file; choose a directory")
    if not out.exists() or not any(out.iterdir()):
        return None
    refuse_foreign(out)  # the user's files: never replaced, even with --overwrite
    if overwrite:
        remove_stale_siblings(out)  # a killed --overwrite run's scratch checkpoints
        return sibling_dir(out, "checkpoints")
    cfg = card_file(out)
    if cfg is not None:
        try:
            old = json.loads(cfg.read_text())
        except ValueError:
            old = {}
        recorded = {**identity, "model": recorded_reference(identity["model"], out)}  # as the card writes it
        same = all(old.get(k) in (v, identity[k]) for k, v in recorded.items())
        if not same:
            raise TransferlabError(
                f"{out} already holds a different model ({old.get('model') or 'no model reference'}, "
                f"{old.get('method')}); choose another "
                "--out or pass --overwrite")
        raise TransferlabError(f"{out} already holds this {what}; pass --overwrite to redo it")
    if {p.name for p in out.iterdir()} - {"checkpoints", OWNER_FILE}:  # another transferlab output, not a checkpoint
        raise TransferlabError(f"{out} already holds another transferlab output; choose another --out or pass "
                               "--overwrite")
    return None  # this run's checkpoints, resumed (a different run's are refused by the loop)
