"""The data check that opens ``transferlab auto``: what is wrong with a dataset before any model sees it. A check is
``fn(train, test) -> list[Finding]``; register one with ``@CHECKS.register(name, summary=...)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .._registry import Registry
from ..data import item_digests

CHECKS: Registry[Callable[..., list[Finding]]] = Registry("data check")

#: a class with fewer training examples than this is "tiny": too few to hold out validation examples and learn from
TINY_CLASS = 10
#: the largest over the smallest class count from which a training split is called imbalanced
IMBALANCE_RATIO = 5.0


@dataclass
class Finding:
    check: str
    level: str  # "error" (auto cannot go on), "warning" (it goes on; the report says what it means), "ok"
    message: str
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_data(train: Any, test: Any | None) -> list[Finding]:
    """Every registered check on the train split (and the test split, when there is one), in registry order."""
    out: list[Finding] = []
    for name in CHECKS.list():
        out.extend(CHECKS.get(name)(train, test))
    return out


@CHECKS.register("classes", summary="at least two classes, each with a training example")
def _classes(train: Any, test: Any | None) -> list[Finding]:
    counts = train.class_counts()
    if train.num_classes < 2:
        return [Finding("classes", "error", f"{train.name} has one class ({train.class_names[0]!r}): there is "
                        "nothing to classify; give at least two classes")]
    empty = [str(c) for c, n in zip(train.class_names, counts, strict=True) if n == 0]
    if empty:
        return [Finding("classes", "error", f"{len(empty)} class(es) have no training example: "
                        f"{', '.join(empty[:5])}", {"classes": empty})]
    return [Finding("classes", "ok", f"{train.num_classes} classes, {len(train)} training examples")]


@CHECKS.register("tiny_classes", summary=f"classes with fewer than {TINY_CLASS} training examples")
def _tiny(train: Any, test: Any | None) -> list[Finding]:
    counts = train.class_counts()
    tiny = {str(c): int(n) for c, n in zip(train.class_names, counts, strict=True) if 0 < n < TINY_CLASS}
    if not tiny:
        return []
    shown = ", ".join(f"{c} ({n})" for c, n in list(tiny.items())[:5])
    return [Finding("tiny_classes", "warning", f"{len(tiny)} class(es) have fewer than {TINY_CLASS} training examples "
                    f"({shown}): their accuracy is a guess; collect more, or expect the linear probe to be chosen",
                    {"classes": tiny})]


@CHECKS.register("imbalance", summary=f"largest / smallest class >= {IMBALANCE_RATIO:g}")
def _imbalance(train: Any, test: Any | None) -> list[Finding]:
    counts = train.class_counts()
    nz = counts[counts > 0]
    if len(nz) < 2:
        return []
    ratio = float(nz.max() / nz.min())
    if ratio < IMBALANCE_RATIO:
        return []
    big, small = train.class_names[int(np.argmax(counts))], train.class_names[int(np.argmin(np.where(counts > 0,
                                                                                                    counts, 1 << 62)))]
    return [Finding("imbalance", "warning", f"imbalanced classes: {big!r} has {ratio:.1f}x the examples of {small!r}; "
                    "accuracy flatters the large classes: read the per-class recall in the report",
                    {"ratio": ratio, "largest": str(big), "smallest": str(small)})]


@CHECKS.register("duplicates", summary="the same example in the train and the test split (content, not name)")
def _duplicates(train: Any, test: Any | None) -> list[Finding]:
    if test is None:
        return []
    tr = set(item_digests(train))
    dup = [i for i, d in enumerate(item_digests(test)) if d in tr]
    if not dup:
        return [Finding("duplicates", "ok", "no test example is also a training example")]
    share = len(dup) / len(test)
    return [Finding("duplicates", "warning", f"{len(dup)} test example(s) ({100 * share:.1f} %) also appear in the "
                    "training split: the test accuracy overstates what the model does on new data; remove them "
                    "from one split", {"count": len(dup), "share": share, "test_indices": dup[:50]})]
