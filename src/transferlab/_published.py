"""Published reference numbers that results are shown next to (read by the benchmarks and by the reports)."""

from __future__ import annotations

#: 8-task average absolute accuracy (%), ViT-B/32 (CLIP); TIES-Merging (Yadav et al. 2023) and AdaMerging
#: (Yang et al. 2024) tables, as listed in ../shared/REFERENCES.md. AdaMerging learns coefficients without labels
#: (entropy), the closest published relative of ``atlas objective=entropy``.
MERGE_PUBLISHED = {"pretrained": 48.0, "average": 65.8, "fisher": 68.3, "task_arithmetic": 69.1, "regmean": 71.8,
             "ties": 72.4, "adamerging": 80.1, "individual": 90.8}


def merge_published(method: str) -> float | None:
    """The published figure for a ``bench merge`` row (``ties+tuned`` -> ``ties``: the papers tune lam on
    validation data)."""
    return MERGE_PUBLISHED.get(method.split("+")[0])
