"""``prune``: keep the source classes that matter for a target (DP4TL), written as a dataset manifest that
``load_dataset`` (and ``transferlab zoo build``) read as a dataset."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_dir, check_output, refuse_foreign, write_json_atomic, write_text_atomic
from .._runtime import in_runtime
from .._version import __version__
from ..data import Dataset, load_dataset
from ..errors import TransferlabError
from ._methods import METHODS, Context
from ._result import PruneResult


def list_methods() -> list[str]:
    """The pruning methods (``feature_map``, ``label_map``, ``random``)."""
    return METHODS.list()


@in_runtime
def prune(source: str | Path | Dataset, target: str | Path | Dataset | Any, surrogate: str | Path | None = None,
          method: str = "label_map", *, keep: float = 0.5, out: str | Path | None = None, overwrite: bool = False,
          seed: int = 0, limit: int | None = None, batch_size: int = 64, trust_pickle: bool = False) -> PruneResult:
    """Score every class of ``source`` (its train split) for ``target`` (its train split; labels unread) with
    ``method`` and keep the best ``keep`` share (at least one class). ``surrogate``: a classifier for the source's
    classes (a model directory fitted on the source, or a reference whose head predicts them); ``random`` needs none.
    ``limit``: a class-stratified sample of each split for the scoring. With ``out``: ``transferlab-dataset.json`` (a
    dataset manifest: ``load_dataset(out)`` is the kept classes of the source, every split) with each class's score,
    and ``report.html`` (what was pruned: classes and training examples before and after, every class's score), the
    two written together or not at all."""
    t0 = time.perf_counter()
    if method not in METHODS:
        raise TransferlabError(f"unknown pruning method {method!r}; known: {', '.join(list_methods())}")
    if not (isinstance(keep, (int, float)) and math.isfinite(keep) and 0 < keep <= 1):
        raise TransferlabError(f"keep must lie in (0, 1] (the share of source classes kept), got {keep!r}")
    if out is not None and isinstance(source, Dataset):
        raise TransferlabError("a manifest names its source: give the source as a reference (builtin:NAME or a path), "
                               "not data in memory")
    src = load_dataset(source, "train")
    tgt = load_dataset(target, "train")
    if src.modality != tgt.modality:
        raise TransferlabError(f"the source {src.name} holds {src.modality} data and the target {tgt.name} "
                               f"{tgt.modality}: pruning compares them in one model's space")
    if src.num_classes < 2:
        raise TransferlabError(f"the source {src.name} has one class: nothing to prune")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        check_output(out_dir)
        refuse_foreign(out_dir)  # a folder holding anything transferlab did not write is never replaced
        if out_dir.exists() and any(out_dir.iterdir()):
            if not overwrite:
                raise TransferlabError(f"{out_dir} already holds a pruned source; choose another --out or pass "
                                       "--overwrite")
    meta = METHODS.meta(method)
    sur = None
    if meta.get("needs_surrogate"):
        if surrogate is None:
            raise TransferlabError(f"{method} needs a surrogate: a classifier for {src.name}'s classes (fit one: "
                                   f"transferlab fit {source} -m REF --out DIR, and pass DIR)")
        from ..models import load_classifier

        sur = load_classifier(surrogate, src, f"the surrogate {surrogate}", trust_pickle)
    s_scored = src.stratified_sample(limit, seed=seed) if limit and limit < len(src) else src
    t_scored = tgt.stratified_sample(limit, seed=seed) if limit and limit < len(tgt) else tgt
    scores = np.asarray(METHODS.get(method)(Context(s_scored, t_scored, sur, seed, batch_size)), dtype=np.float64)
    n_keep = max(1, int(round(keep * src.num_classes)))
    order = sorted(range(src.num_classes), key=lambda c: (-scores[c], c))  # ties: the source's order
    kept_idx = sorted(order[:n_keep])
    names = [str(c) for c in src.class_names]
    kept = [names[c] for c in kept_idx]
    by_class = {names[c]: float(scores[c]) for c in range(src.num_classes)}
    sizes = np.bincount(src.labels, minlength=src.num_classes)
    info = {"source": str(source), "target": str(target) if not isinstance(target, Dataset) else tgt.name,
            "surrogate": None if surrogate is None else str(surrogate), "keep": keep, "n_source_classes":
            src.num_classes, "n_kept": n_keep, "n_target_scored": len(t_scored), "seed": seed,
            "kept_share_of_examples": float(np.isin(src.labels, kept_idx).mean()), "n_source_examples": len(src),
            "n_kept_examples": int(sizes[kept_idx].sum()),
            "class_sizes": {names[c]: int(sizes[c]) for c in range(src.num_classes)},
            "seconds": time.perf_counter() - t0}
    result = PruneResult(method, kept, by_class, None, info)
    return result if out_dir is None else _write(result, source, out_dir)


def _write(result: PruneResult, source: str | Path | Dataset, out_dir: Path) -> PruneResult:
    """The manifest and report.html into ``out_dir``, together or not at all (built in a temporary sibling, then
    swapped in)."""
    from ..data import MANIFEST, manifest_dict
    from ..report import prune_report_html

    info = {k: v for k, v in result.info.items() if k not in ("source", "class_sizes", "seconds")}
    result.manifest = out_dir / MANIFEST
    html = prune_report_html(result.to_dict())  # rendered before anything is written
    with atomic_dir(out_dir) as stage:
        write_json_atomic(stage / MANIFEST, manifest_dict(source, result.kept, out_dir, method=result.method,
                                                          scores=result.scores, transferlab_version=__version__,
                                                          **info))
        write_text_atomic(stage / "report.html", html)
    return result
