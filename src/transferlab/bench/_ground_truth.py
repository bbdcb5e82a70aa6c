"""Ground truth for ranking: the test accuracy each model reaches on each target with a ``fit`` protocol, cached per
(model weights, data, protocol, grid, options) so a bench resumes cell by cell.

A training protocol (``finetune``, ``lora``, ``partial``, any fit method that trains) runs, per cell, a small grid of
learning rates (and the head's learning-rate multiplier, where the method has one), each point with early stopping on
a validation split carved from the training split; the point with the best validation accuracy gives the cell's test
accuracy, as the transferability literature tunes each cell (LogME, SFDA). ``best`` runs every protocol of
:data:`BEST_OF` and keeps, per cell, the one a practitioner would deploy: the best validation accuracy.

Every cell also records the linear probe on the frozen features of the same training examples (the reference a
trained cell must reach: below it the cell is flagged under-trained) and which test examples the chosen model got
right (for bootstrap intervals of its accuracy). A model that cannot be trained (a pixel or TF-IDF baseline, an ONNX
model) gets its linear-probe accuracy instead, marked as a fallback.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_json_atomic
from ..errors import TransferlabError
from ._cells import (
    VAL_FRACTION,
    choose_protocol,
    converged,
    fit_point,
    lr_edge,
    pack_correct,
    read_cell,
)
from ._cells import unpack_correct as unpack_correct  # where the checks and older callers import it

#: the protocols ``best`` chooses among, per cell, by validation accuracy
BEST_OF = ("linear_probe", "finetune", "lora", "partial")
#: the learning rates of the default grid, as multiples of the method's default: upwards, because on the built-in
#: benchmark (500 examples, 32 px, 10 epochs) the first 16 finetune cells of a {3x, 1x, 1/3x} grid all chose 3x;
#: a cell whose best is still an edge of this grid tries more beyond it (bench rank's ``lr_extend``, _lr_extend.py)
LR_FACTORS = (10.0, 3.0, 1.0)
#: the head's learning-rate multipliers of the default grid (methods with a ``head_lr_scale`` option)
HEAD_SCALES = (1.0, 10.0)
FORMAT = 2  # cells of format 1 (one fit, no grid) are recomputed


def check_protocol(protocol: str) -> None:
    """``linear_probe``, ``best`` or a fit method; refused before any work."""
    from ..fit import list_methods

    if protocol not in (*list_methods(), "best"):
        raise TransferlabError(f"unknown protocol {protocol!r}; choose best or a fit method: {', '.join(list_methods())}")


def default_grid(protocol: str) -> dict[str, list[float]]:
    """The grid a training protocol runs per cell: ``lr`` at :data:`LR_FACTORS` times the method's default, and
    ``head_lr_scale`` at :data:`HEAD_SCALES` where the method takes it."""
    from ..fit import METHODS

    if protocol == "linear_probe":
        return {}
    d = METHODS.meta(protocol).get("default_lr") or 1e-3
    grid: dict[str, list[float]] = {"lr": [float(f"{d * f:.3g}") for f in LR_FACTORS]}
    if "head_lr_scale" in inspect.signature(METHODS.get(protocol)).parameters:
        grid["head_lr_scale"] = list(HEAD_SCALES)
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (in the order given: the first point is tried first)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def untrainable_reason(backbone: Any) -> str | None:
    """Why ``backbone`` cannot be trained (a baseline, an ONNX model), or None when fit can train it."""
    from ..zoo import HFBackbone, SentenceTransformerBackbone, TorchImageBackbone

    if isinstance(backbone, (TorchImageBackbone, SentenceTransformerBackbone, HFBackbone)):
        return None
    if getattr(backbone, "dataset_level", False) or getattr(backbone, "baseline", False):
        return f"{backbone.ref} is a baseline that only extracts features"
    return f"{backbone.ref} is not a torch model (only its features can be extracted)"


#: fit's own arguments a grid may vary (everything else is an option of the method)
FIT_ARGUMENTS = ("lr", "batch_size")


def preflight(protocol: str, model_refs: list[str], grids: dict[str, dict[str, list[Any]]], train: Any,
              image_size: int | None, trust_pickle: bool = False) -> dict[str, str]:
    """Before any work: every grid point's options are valid for its method, and every training protocol prepares on
    every trainable model (a fresh network per try: adapters that find no layer, a block count the model lacks and
    the like are refused now, not after an hour). Returns ``{ref: why}`` of the models that cannot be trained (they
    get the linear-probe fallback)."""
    from .._registry import check_options
    from ..fit import METHODS, FitContext
    from ..models import build
    from ..zoo import resolve_model

    for p, g in grids.items():
        for point in grid_points(g):
            check_options(p, METHODS.get(p), {k: v for k, v in point.items() if k not in FIT_ARGUMENTS}, skip=2)
    fallbacks = {}
    for ref in model_refs:
        backbone = resolve_model(ref, trust_pickle=trust_pickle)
        why = untrainable_reason(backbone)
        if why is not None:
            fallbacks[ref] = why
            continue
        for p, g in grids.items():
            point = {k: v for k, v in grid_points(g)[0].items() if k not in FIT_ARGUMENTS}
            try:
                METHODS.get(p)(build(backbone, train.num_classes).net,
                               FitContext(backbone, train, image_size, 0), **point)
            except (TransferlabError, TypeError, ValueError, RuntimeError) as exc:
                raise TransferlabError(f"the ground-truth protocol {p} cannot apply to {ref}: "
                                       f"{str(exc).splitlines()[0]}; choose another protocol or leave the model out "
                                       "of the zoo") from None
    return fallbacks


def cell_key(model_identity: dict[str, Any], train_fp: str, test_fp: str, protocol: str,
             options: dict[str, Any], seed: int = 0, replicate: int = 0) -> str:
    """The cache key of a cell. The seed (the training sample, validation split, initialisation, the probe) is part
    of it; seed 0 is left out of the hashed blob so the cells FORMAT 2 wrote before the seed was added stay valid.
    ``replicate`` r > 0 (the same sample, the fit seeded :func:`replicate_seed`) is keyed apart; replicate 0 is left
    out, so a bench without replicates keeps its keys."""
    blob = json.dumps({"model": model_identity, "train": train_fp, "test": test_fp, "protocol": protocol,
                       "options": options, "v": FORMAT, **({"seed": seed} if seed else {}),
                       **({"replicate": replicate} if replicate else {})}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of replicate ``replicate`` of a cell (its validation split, initialisation, data order); the
    training sample stays the one ``seed`` draws, which the metrics score too."""
    return seed + 1000 * replicate


def feature_pair(backbone: Any, train: Any, test: Any, options: dict[str, Any]) -> tuple[Any, Any]:
    """Cached pooled features of the train and test splits (float64). Baselines fitted per dataset (PCA of pixels,
    TF-IDF) are fitted once on train and test inputs together (unsupervised), so both share a basis."""
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


def _probe(backbone: Any, train: Any, test: Any, options: dict[str, Any], seed: int,
           whole: bool = False) -> dict[str, Any]:
    """The linear probe on frozen features: trained on the training part of the split fit uses (so it sees the same
    examples as a trained cell), scored on the validation part and the test split; ``whole``: on the whole training
    split, no validation (the ``linear_probe`` protocol's ground truth)."""
    from ..data import validation_indices
    from ..train import logistic_probe

    f_tr, f_te = feature_pair(backbone, train, test, options)
    tr_idx, val_idx = validation_indices(train.labels, 0.0 if whole else VAL_FRACTION, seed)
    c = int(max(train.labels.max(), test.labels.max())) + 1
    coef, bias = logistic_probe(f_tr[tr_idx], train.labels[tr_idx], c, seed)
    pred = (f_te @ coef.T + bias).argmax(1)
    val_acc = (float(np.mean((f_tr[val_idx] @ coef.T + bias).argmax(1) == train.labels[val_idx]))
               if len(val_idx) else None)
    return {"protocol": "linear_probe", "test_accuracy": float(np.mean(pred == test.labels)),
            "val_accuracy": val_acc, "correct": pack_correct(pred == test.labels)}


def _train_grid(model_ref: str, protocol: str, train: Any, test: Any, seed: int, options: dict[str, Any],
                grid: dict[str, list[Any]], trust_pickle: bool) -> dict[str, Any]:
    """Every grid point fitted with early stopping; the best validation accuracy chooses the cell's result."""
    points = []
    best: tuple[float, int, Any] | None = None
    for i, point in enumerate(grid_points(grid)):
        rec, predictions = fit_point(model_ref, protocol, train, test, seed, options, point, trust_pickle)
        points.append(rec)
        key = -1.0 if rec["val_accuracy"] is None else float(rec["val_accuracy"])
        if best is None or key > best[0]:
            best = (key, i, predictions)
    assert best is not None
    chosen = points[best[1]]
    return {"protocol": protocol, "test_accuracy": chosen["test_accuracy"], "val_accuracy": chosen["val_accuracy"],
            "correct": pack_correct(best[2] == test.labels), "grid": points, "chosen": best[1],
            "converged": converged(chosen), "lr_at_grid_edge": lr_edge(points, best[1]),
            "train_seconds": float(sum(p["seconds"] for p in points))}


def ground_truth_cell(model_ref: str, target: str, protocol: str, *, limit: int | None, seed: int,
                      options: dict[str, Any], cache_root: str, grid: dict[str, dict[str, list[Any]]] | None = None,
                      trust_pickle: bool = False, replicate: int = 0, lr_extend: int = 0) -> dict[str, Any]:
    """``model_ref`` on ``target``'s train split (a stratified ``limit`` sample when given) with ``protocol``: its
    test accuracy, the linear-probe reference, the grid's results and the cost. ``grid``: protocol -> grid (default:
    :func:`default_grid`). ``replicate`` r: the same cell fitted with the seed :func:`replicate_seed` (another
    validation split, initialisation and data order; the same training sample). ``lr_extend``: when the chosen
    learning rate is the grid's largest or smallest, try up to this many more beyond it
    (:func:`~transferlab.bench._lr_extend.extended_cell`). Cached under ``cache_root/ground_truth``. Runs in a worker
    process too."""
    import os

    from ..data import load_dataset
    from ..zoo import resolve_model

    os.environ.setdefault("TRANSFERLAB_CACHE", cache_root)
    train = load_dataset(target, "train")
    if limit:
        train = train.stratified_sample(limit, seed=seed)
    test = load_dataset(target, "test")
    backbone = resolve_model(model_ref, trust_pickle=trust_pickle)
    runs = list(BEST_OF) if protocol == "best" else [protocol]
    grids = {p: (grid or {}).get(p) or default_grid(p) for p in runs if p != "linear_probe"}
    # a linear-probe cell is its features': keyed by their preprocessing too (the trained protocols' inputs are
    # the models' own, keyed by the code's FORMAT)
    features = ({"features": backbone.preprocessing(options.get("image_size"))}
                if protocol == "linear_probe" and hasattr(backbone, "preprocessing") else {})
    key = cell_key(backbone.identity(), train.fingerprint, test.fingerprint, protocol,
                   {**options, "grids": grids, "val_fraction": VAL_FRACTION, **features}, seed, replicate)
    path = Path(cache_root) / "ground_truth" / f"{key}.json"
    cell = read_cell(path)
    if cell is None:
        cell = _computed_cell(_CellTask(model_ref, target, protocol, backbone, train, test, seed, replicate, options,
                                        grids, trust_pickle))
        write_json_atomic(path, cell)
        cell = {**cell, "cached": False}
    if lr_extend and any(r.get("lr_at_grid_edge") for r in cell["runs"].values()):
        from ._lr_extend import Extension, extended_cell

        cell = extended_cell(cell, Extension(model_ref, train, test, replicate_seed(seed, replicate), options,
                                             trust_pickle, lr_extend, path.with_name(f"{key}-lr{lr_extend}.json")))
    return cell


@dataclass(frozen=True)
class _CellTask:
    """What computing one cell reads."""

    model_ref: str
    target: str
    protocol: str
    backbone: Any
    train: Any
    test: Any
    seed: int  # the training sample's
    replicate: int
    options: dict[str, Any]
    grids: dict[str, dict[str, list[Any]]]
    trust_pickle: bool


def _computed_cell(c: _CellTask) -> dict[str, Any]:
    """The probe and every training protocol's grid of one cell, the protocol chosen, its flags and cost."""
    t0 = time.perf_counter()
    fallback = untrainable_reason(c.backbone) if c.protocol != "linear_probe" else None
    fit_seed = replicate_seed(c.seed, c.replicate)
    try:
        feature_options = {k: v for k, v in c.options.items() if k == "image_size"}
        probe = _probe(c.backbone, c.train, c.test, feature_options, fit_seed, whole=c.protocol == "linear_probe")
        results = {"linear_probe": probe}
        if fallback is None:
            for p in c.grids:
                results[p] = _train_grid(c.model_ref, p, c.train, c.test, fit_seed, c.options, c.grids[p],
                                         c.trust_pickle)
    except TransferlabError as exc:
        raise TransferlabError(f"ground truth for {c.model_ref} on {c.target} ({c.protocol}): {exc}") from None
    chosen = ("linear_probe" if fallback is not None or c.protocol == "linear_probe"
              else choose_protocol(results) if c.protocol == "best" else c.protocol)
    r = results[chosen]
    trained = chosen != "linear_probe"
    return {"format": FORMAT, "model": c.model_ref, "target": c.target, "protocol": c.protocol,
            "chosen_protocol": chosen, "test_accuracy": r["test_accuracy"], "val_accuracy": r["val_accuracy"],
            "correct": r["correct"], "probe_accuracy": probe["test_accuracy"], "fallback": fallback,
            "under_trained": bool(trained and r["test_accuracy"] < probe["test_accuracy"]),
            "converged": r.get("converged") if trained else None,
            "lr_at_grid_edge": r.get("lr_at_grid_edge") if trained else None,
            "runs": {p: {k: v for k, v in res.items() if k != "correct"} for p, res in results.items()},
            "seconds": time.perf_counter() - t0,
            "train_seconds": sum(res.get("train_seconds", 0.0) for res in results.values()) or None,
            "n_train": len(c.train), "n_test": len(c.test), **({"replicate": c.replicate} if c.replicate else {})}
