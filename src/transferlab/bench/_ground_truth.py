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
from ..train import probe_accuracy


def cell_key(model_identity: dict[str, Any], train_fp: str, test_fp: str, protocol: str,
             options: dict[str, Any]) -> str:
    blob = json.dumps({"model": model_identity, "train": train_fp, "test": test_fp, "protocol": protocol,
                       "options": options, "v": 1}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def feature_pair(backbone: Any, train: Any, test: Any, options: dict[str, Any]) -> tuple[Any, Any]:
    """Cached pooled features of the train and test splits (float64). Baselines fitted per dataset (PCA of pixels,
    TF-IDF) are fitted once on train and test inputs together (unsupervised), so both share a basis."""
    import numpy as np

    from ..zoo import FeatureCache, extract_features

    size = options.get("image_size") or (backbone.default_size(train) if hasattr(backbone, "default_size") else None)
    cache = FeatureCache()
    if getattr(backbone, "dataset_level", False):
        from ..data import Dataset

        items = (np.concatenate([train.items, test.items]) if isinstance(train.items, np.ndarray)
                 else list(train.items) + list(test.items))
        both = Dataset(f"{train.name}+test", train.modality, items, np.concatenate([train.labels, test.labels]),
                       train.class_names, split="train+test")
        f = extract_features(backbone, both, image_size=size, cache=cache).features.astype(np.float64)
        return f[:len(train)], f[len(train):]
    return (extract_features(backbone, train, image_size=size, cache=cache).features.astype(np.float64),
            extract_features(backbone, test, image_size=size, cache=cache).features.astype(np.float64))


def _probe_on_features(backbone: Any, train: Any, test: Any, options: dict[str, Any], seed: int) -> float:
    """The same number ``fit(..., "linear_probe", val_fraction=0)`` reports for torch models."""
    f_tr, f_te = feature_pair(backbone, train, test, options)
    return probe_accuracy(f_tr, train.labels, f_te, test.labels, seed)


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
        if protocol == "linear_probe":  # on features, so feature-only models (pixels, tfidf, ONNX) get one too
            test_acc, val_acc, train_s = _probe_on_features(backbone, train, test, options, seed), None, None
        else:
            r = fit(train, model_ref, protocol, test=test, seed=seed, trust_pickle=trust_pickle, **options)
            test_acc, val_acc, train_s = r.metrics["test_accuracy"], r.metrics.get("val_accuracy"), \
                r.metrics["train_seconds"]
    except TransferlabError as exc:
        raise TransferlabError(f"ground truth for {model_ref} on {target} ({protocol}): {exc}") from None
    cell = {"model": model_ref, "target": target, "protocol": protocol, "test_accuracy": test_acc,
            "val_accuracy": val_acc, "seconds": time.perf_counter() - t0, "train_seconds": train_s,
            "n_train": len(train), "n_test": len(test)}
    write_json_atomic(path, cell)
    return {**cell, "cached": False}
