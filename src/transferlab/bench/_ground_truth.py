"""Ground truth for ranking: the test accuracy each model reaches on each target with a ``fit`` protocol, cached per
(model weights, data, protocol, options) so a bench resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from .._io import write_json_atomic
from ..errors import TransferlabError


def cell_key(model_identity: dict[str, Any], train_fp: str, test_fp: str, protocol: str,
             options: dict[str, Any]) -> str:
    blob = json.dumps({"model": model_identity, "train": train_fp, "test": test_fp, "protocol": protocol,
                       "options": options, "v": 1}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def ground_truth_cell(model_ref: str, target: str, protocol: str, *, limit: int | None, seed: int,
                      options: dict[str, Any], cache_root: str, trust_pickle: bool = False) -> dict[str, Any]:
    """Fit ``model_ref`` on ``target``'s train split (a stratified ``limit`` sample when given) with ``protocol``;
    return its test accuracy and cost. Cached under ``cache_root/ground_truth``. Runs in a worker process too."""
    import os

    from ..data import load_dataset
    from ..fit import fit
    from ..zoo import resolve_model

    os.environ.setdefault("TRANSFERLAB_CACHE", cache_root)
    train = load_dataset(target, "train")
    if limit:
        train = train.stratified_sample(limit, seed=seed)
    test = load_dataset(target, "test")
    backbone = resolve_model(model_ref, trust_pickle=trust_pickle)
    key = cell_key(backbone.identity(), train.fingerprint, test.fingerprint, protocol, options)
    path = Path(cache_root) / "ground_truth" / f"{key}.json"
    if path.is_file():
        try:
            return {**json.loads(path.read_text()), "cached": True}
        except ValueError:
            path.unlink(missing_ok=True)  # a damaged entry is recomputed
    t0 = time.perf_counter()
    try:
        r = fit(train, model_ref, protocol, test=test, seed=seed, trust_pickle=trust_pickle, **options)
    except TransferlabError as exc:
        raise TransferlabError(f"ground truth for {model_ref} on {target} ({protocol}): {exc}") from None
    cell = {"model": model_ref, "target": target, "protocol": protocol, "test_accuracy": r.metrics["test_accuracy"],
            "val_accuracy": r.metrics.get("val_accuracy"), "seconds": time.perf_counter() - t0,
            "train_seconds": r.metrics["train_seconds"], "n_train": len(train), "n_test": len(test)}
    write_json_atomic(path, cell)
    return {**cell, "cached": False}
