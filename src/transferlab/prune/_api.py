"""``prune``: keep the source classes that matter for a target (DP4TL), written as a dataset manifest that
``load_dataset`` (and ``transferlab zoo build``) read as a dataset."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_dir, check_output, refuse_foreign, write_json_atomic
from .._runtime import in_runtime
from .._version import __version__
from ..data import Dataset, load_dataset
from ..errors import TransferlabError
from ._methods import METHODS, Context


def list_methods() -> list[str]:
    """The pruning methods (``feature_map``, ``label_map``, ``random``)."""
    return METHODS.list()


@dataclass
class PruneResult:
    method: str
    kept: list[str]
    scores: dict[str, float]
    manifest: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "kept": self.kept, "scores": self.scores,
                "manifest": None if self.manifest is None else str(self.manifest), **self.info}


@in_runtime
def prune(source: str | Path | Dataset, target: str | Path | Dataset | Any, surrogate: str | Path | None = None,
          method: str = "label_map", *, keep: float = 0.5, out: str | Path | None = None, overwrite: bool = False,
          seed: int = 0, limit: int | None = None, batch_size: int = 64, trust_pickle: bool = False) -> PruneResult:
    """Score every class of ``source`` (its train split) for ``target`` (its train split; labels unread) with
    ``method`` and keep the best ``keep`` share (at least one class). ``surrogate``: a classifier for the source's
    classes (a model directory fitted on the source, or a reference whose head predicts them); ``random`` needs none.
    ``limit``: a class-stratified sample of each split for the scoring. With ``out``: ``transferlab-dataset.json`` (a
    dataset manifest: ``load_dataset(out)`` is the kept classes of the source, every split) with each class's score."""
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
    info = {"source": str(source), "target": str(target) if not isinstance(target, Dataset) else tgt.name,
            "surrogate": None if surrogate is None else str(surrogate), "keep": keep, "n_source_classes":
            src.num_classes, "n_kept": n_keep, "n_target_scored": len(t_scored), "seed": seed,
            "kept_share_of_examples": float(np.isin(src.labels, kept_idx).mean())}
    manifest = None
    if out_dir is not None:
        from ..data import MANIFEST, manifest_dict

        with atomic_dir(out_dir) as stage:
            body = manifest_dict(source, kept, out_dir, method=method, scores=by_class,
                                 transferlab_version=__version__, **{k: v for k, v in info.items() if k != "source"})
            write_json_atomic(stage / MANIFEST, body)
        manifest = out_dir / MANIFEST
    return PruneResult(method, kept, by_class, manifest, info)
