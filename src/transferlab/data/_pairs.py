"""Sentence-pair data: ``text_a``, ``text_b`` and ``label`` (question-to-FAQ matching, requirement-to-code
traceability, natural language inference).

A pair dataset is a text :class:`~transferlab.data.Dataset` whose items are the two texts joined by
:data:`PAIR_SEP` (``"a [SEP] b"``) and whose ``meta`` keeps the two sides (``text_a``, ``text_b``: one value per
item, a subset keeps its items'). So everything that takes texts takes pairs: ``fit`` trains a bi-encoder by
default (``transferlab.models.BiEncoder`` splits the joined text at its separator token and encodes each side on
its own) or, with ``pair_encoder="cross"``, a cross-encoder (a BERT-family tokenizer reads ``[SEP]`` as its
separator token: ``[CLS] a [SEP] b [SEP]``, the joint encoding), and ``predict`` reads the same joined texts. What needs the sides apart reads them with :func:`pair_texts`: ``rank``
encodes each side with a bi-encoder and scores ``[u, v, |u - v|, u * v]`` (Reimers & Gurevych 2019, InferSent's
features), and :func:`accuracy_at_k` groups the candidates of each ``text_a``.

``builtin:rotten-tomatoes-pairs`` (:func:`continuation_pairs`) is a matching task made from builtin:rotten-tomatoes
with a documented recipe: each chosen snippet is cut at its middle word; its first half (``text_a``, the query) is
paired with its own second half (``match``) and with the second halves of 4 other snippets of the same split
(``other``): 5 candidates per query, accuracy@1 by chance 0.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ._dataset import Dataset, _labels

#: what joins a pair's two texts into one (BERT's separator token; other tokenizers read it as plain text)
PAIR_SEP = " [SEP] "
#: the two columns of a pair table (CSV/JSONL/DataFrame)
PAIR_COLUMNS = ("text_a", "text_b")
#: class names read as "these two match" when the data does not say (``meta["positive"]``)
_POSITIVE_NAMES = ("1", "match", "yes", "true", "positive", "entailment", "duplicate", "relevant")


def pair_dataset(name: str, text_a: Sequence[str], text_b: Sequence[str], labels: np.ndarray,
                 class_names: Sequence[str], split: str, meta: dict[str, Any] | None = None) -> Dataset:
    """The pair dataset of two lists of texts (one pair per position) and their labels."""
    a, b = [str(t) for t in text_a], [str(t) for t in text_b]
    if len(a) != len(b):
        raise DataError(f"{name}: {len(a)} texts in text_a but {len(b)} in text_b; give one of each per pair")
    empty = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if not x.strip() or not y.strip()]
    if empty:
        raise DataError(f"{name}: {len(empty)} pair(s) have an empty side, e.g. pair {empty[0]}; every pair needs "
                        "two texts")
    items = [x + PAIR_SEP + y for x, y in zip(a, b, strict=True)]
    return Dataset(name, "text", items, labels, tuple(class_names), split,
                   {**(meta or {}), "pair": True, "text_a": a, "text_b": b})


def from_pairs(text_a: Sequence[str], text_b: Sequence[str], labels: Any, *,
               class_names: Sequence[str] | None = None, name: str = "pairs", split: str = "train") -> Dataset:
    """Pairs in memory: two lists of texts and one label per pair (integers with ``class_names``, or any values)."""
    y, names = _labels(labels, class_names, name)
    return pair_dataset(name, text_a, text_b, y, names, split, {"source": "memory"})


def pair_texts(ds: Any) -> tuple[list[str], list[str]] | None:
    """``(text_a, text_b)`` of a pair dataset (or pair inputs); None for anything else."""
    meta = getattr(ds, "meta", None) or {}
    if not meta.get("pair"):
        return None
    a, b = meta.get("text_a"), meta.get("text_b")
    if a is None or b is None or len(a) != len(ds) or len(b) != len(ds):
        return None
    return list(a), list(b)


def positive_class(ds: Dataset, positive: str | None = None) -> int:
    """The index of the class that means "the pair matches": ``positive``, else the data's ``meta["positive"]``,
    else a class named 1/match/yes/true/positive/entailment/duplicate/relevant, else the last class."""
    names = [c.lower() for c in ds.class_names]
    want = positive if positive is not None else ds.meta.get("positive")
    if want is not None:
        if str(want).lower() not in names:
            raise DataError(f"{ds.name}: no class {want!r} (classes: {', '.join(ds.class_names)})")
        return names.index(str(want).lower())
    return next((names.index(p) for p in _POSITIVE_NAMES if p in names), len(names) - 1)


def accuracy_at_k(ds: Dataset, scores: Any, ks: Sequence[int] = (1, 3), *, positive: str | None = None,
                  ) -> dict[str, float]:
    """Retrieval accuracy of a matching task: the pairs grouped by ``text_a`` (a query and its candidates); a query
    counts as found at ``k`` when a matching candidate is among its ``k`` highest-scoring ones. Ties go against the
    match (a candidate scored as high as the match ranks above it), so constant scores find nothing by luck.

    ``scores``: one per pair (higher: more likely a match), or class probabilities ``[N, C]`` (the positive
    class's column, :func:`positive_class`). Queries without a match or with a single candidate are left out.
    Returns ``accuracy@k`` for each ``k``, ``queries`` and ``candidates`` (the mean per query)."""
    sides = pair_texts(ds)
    if sides is None:
        raise DataError(f"{ds.name} is not pair data (text_a, text_b): accuracy@k groups candidates by text_a")
    pos = positive_class(ds, positive)
    s = np.asarray(scores, dtype=np.float64)
    s = s[:, pos] if s.ndim == 2 else s
    if s.shape != (len(ds),):
        raise DataError(f"{ds.name}: {s.shape[0] if s.ndim else 0} scores for {len(ds)} pairs; give one per pair")
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(sides[0]):
        groups.setdefault(a, []).append(i)
    ranks, sizes = [], []
    for idx in groups.values():
        idx_a = np.asarray(idx)
        match = ds.labels[idx_a] == pos
        if not match.any() or len(idx_a) < 2:
            continue
        best = s[idx_a][match].max()
        ranks.append(1 + int((s[idx_a][~match] >= best).sum()))  # the best-scored match's rank, ties against it
        sizes.append(len(idx_a))
    if not ranks:
        raise DataError(f"{ds.name}: no text_a has a matching candidate among several: not a matching task")
    r = np.asarray(ranks)
    return {**{f"accuracy@{k}": float((r <= k).mean()) for k in ks}, "queries": len(r),
            "candidates": float(np.mean(sizes))}


# ------------------------------------------------------------------------------------- builtin:rotten-tomatoes-pairs
#: queries per split and candidates per query of builtin:rotten-tomatoes-pairs
CONTINUATION = {"queries": {"train": 300, "test": 100}, "candidates": 5, "min_words": 8}


def continuation_pairs(texts: Sequence[str], split: str, *, queries: int, candidates: int, min_words: int,
                       seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """The recipe of builtin:rotten-tomatoes-pairs on ``texts``: ``queries`` texts of at least ``min_words`` words
    (drawn with ``seed``), each cut at its middle word; each first half with its own second half (label 1) and the
    second halves of ``candidates - 1`` other drawn texts (label 0), the candidates of a query in a drawn order."""
    rng = np.random.default_rng([seed, {"train": 0, "test": 1}.get(split, 2)])
    long_enough = [i for i, t in enumerate(texts) if len(t.split()) >= min_words]
    if len(long_enough) < max(queries, candidates):
        raise DataError(f"{len(long_enough)} texts of at least {min_words} words: too few for {queries} queries")
    chosen = rng.choice(long_enough, queries, replace=False)
    halves = []
    for i in chosen:
        words = texts[i].split()
        halves.append((" ".join(words[:len(words) // 2]), " ".join(words[len(words) // 2:])))
    a, b, y = [], [], []
    for q in range(queries):
        others = rng.choice(np.delete(np.arange(queries), q), candidates - 1, replace=False)
        cands = [(q, 1)] + [(int(o), 0) for o in others]
        for j in rng.permutation(candidates):
            c, label = cands[j]
            a.append(halves[q][0])
            b.append(halves[c][1])
            y.append(label)
    return a, b, np.asarray(y, dtype=np.int64)
