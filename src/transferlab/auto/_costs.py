"""The measured costs of ``transferlab auto``'s plan: a probe ranking on a small stratified sample gives each model's
load time, forward time per example (per padded token for text) and metric time; probe fits of one and two epochs
on the same batches of a candidate give its training time per example (the difference: fixed costs cancel), its
evaluation time and its set-up time. ``_planning`` makes the plan from them."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
#: examples of the two probe rankings
PROBE_RANK = (32, 128)
#: most examples ranked: beyond this a ranking hardly changes (issue 11's many-class runs)
RANK_LIMIT = 2000


@dataclass
class RankCost:
    """Per model of the zoo: fixed seconds (loading the weights, on the first batch), forward seconds per example,
    and the metrics' seconds at the probe's size (they grow with about the square root of the sample: their cost is
    mostly in the feature dimension and the classes); plus the ranking's own overhead at the probe (resolving the zoo,
    the consensus), taken as fixed.

    Text models cost per *padded token*, not per example: a batch is padded to its longest text, so a sample's cost
    follows the sum over its batches of size times longest length — one long review in a probe's only batch
    quadruples its cost (Rotten Tomatoes: 40 ms per text on 128 examples, 15 ms on 1,024). For them ``forward`` is
    seconds per padded token and ``tokens`` gives the padded tokens of each sample size the plan may choose."""

    load: dict[str, float]
    forward: dict[str, float]
    metrics: dict[str, float]
    cached: dict[str, bool]
    probe_order: list[str]  # the probe ranking's order (best first)
    n_probe: int
    overhead: float = 0.0
    #: text models: padded tokens of the ranking's sample, by its size (a str: the record is JSON)
    tokens: dict[str, dict[str, float]] = field(default_factory=dict)

    def work(self, model: str, n: int) -> float:
        """What the forward cost of ``model`` on ``n`` examples is proportional to: examples, or padded tokens."""
        table = self.tokens.get(model)
        if not table:
            return float(n)
        if str(n) in table:
            return float(table[str(n)])
        k = min(table, key=lambda s: abs(int(s) - n))  # a size not tabled: the nearest one's tokens per example
        return float(table[k]) * n / int(k)

    def per_example(self, model: str, n: int) -> float:
        """Forward seconds per example of ``model`` on a sample of about ``n`` examples (text: its padded tokens)."""
        return self.forward.get(model, 0.0) * self.work(model, n) / max(n, 1) if model in self.load else 0.0

    def estimate(self, n: int, models: list[str] | None = None) -> float:
        scale = (n / self.n_probe) ** 0.5 if n > self.n_probe else n / max(self.n_probe, 1)
        return float(self.overhead + sum(self.load[m] + (0.0 if self.cached.get(m) else self.work(m, n) * self.forward[m])
                                         + self.metrics[m] * scale for m in (models or list(self.load))))


def rank_cost(train: Any, zoo: Any, image_size: int | None, seed: int, step: Any = None) -> RankCost:
    """Rank two small stratified samples (no feature cache) after a warm-up: each model's costs from the two (the
    slope per example; weights load lazily on the first batch, so the intercept is the load), and a provisional
    order (the bigger probe's). ``step(what)``: told before each probe (the calibration's progress)."""
    from ..rank import rank
    from ..zoo import load_zoo

    z = load_zoo(zoo) if not hasattr(zoo, "models") else zoo
    say = step or (lambda what: None)
    # a metric that fails on a probe's few examples per class is expected; the real ranking reports its own failures
    with _quiet("transferlab.rank"):
        say(f"probe ranking 1/3 ({z.models[0].ref}, warm-up)")
        rank(train.stratified_sample(min(2 * train.num_classes, len(train)), seed=seed), [z.models[0].ref],
             image_size=image_size, use_cache=False, seed=seed)  # imports and first-call costs, paid once per process
        runs = []
        for k, n in enumerate(PROBE_RANK, 2):
            probe = train.stratified_sample(min(n, len(train)), seed=seed)
            say(f"probe ranking {k}/3 ({len(z.models)} models on {len(probe)} examples)")
            res = rank(probe, z, image_size=image_size, use_cache=False, seed=seed)
            runs.append((len(probe), {m.model: m for m in res.models}))
    t = res.timings  # what the ranking spends outside extracting features and the metrics (zoo, consensus)
    overhead = max(0.0, float(t["total_seconds"]) - float(t["extraction_seconds"]) - float(t["metrics_seconds"]))
    (na, ra), (nb, rb) = runs
    tokens = _padded_tokens(train, z, (na, nb), seed) if train.modality == "text" else {}
    load, fwd, met = {}, {}, {}
    for ref, mb in rb.items():
        ta, tb = ra[ref].timings, mb.timings
        wa, wb = (tokens[ref][str(na)], tokens[ref][str(nb)]) if ref in tokens else (na, nb)

        def slope(a: float, b: float, wa: float = wa, wb: float = wb) -> float:
            return max((b - a) / (wb - wa) if wb > wa else b / wb, 0.3 * b / wb)

        fa, fb = float(ta.get("forward_seconds", 0.0)), float(tb.get("forward_seconds", 0.0))
        mb_ = float(sum((tb.get("metrics") or {}).values()))
        fwd[ref] = slope(fa, fb)
        met[ref] = mb_  # at the bigger probe
        load[ref] = max(0.0, fb - fwd[ref] * wb) + max(0.0, float(tb.get("extract_seconds", 0.0)) - fb)
    order = [m.model for m in sorted(rb.values(), key=lambda m: m.consensus_rank) if not m.metadata.get("baseline")]
    return RankCost(load, fwd, met, {}, order, nb, overhead, tokens)


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only errors from ``logger`` while probes run (what a probe's few examples make it say is expected)."""
    quiet = logging.getLogger(logger)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quiet.setLevel(level)


def sample_sizes(n_train: int, n_probe: int) -> list[int]:
    """Every ranking sample size :func:`rank_sample` may try, largest first (and the probe's)."""
    n, sizes = min(n_train, RANK_LIMIT), []
    while n > n_probe:
        sizes.append(n)
        n = int(n * 0.8)
    return sizes + [min(n_probe, n_train)]


def padded_tokens(lengths: np.ndarray, batch_size: int = 64) -> int:
    """Tokens a text model processes on examples of these lengths in batches of ``batch_size`` (in order), each
    batch padded to its longest."""
    lengths = np.asarray(lengths)
    return int(sum(len(b) * int(b.max()) for b in (lengths[i:i + batch_size]
                                                  for i in range(0, len(lengths), batch_size))))


def _padded_tokens(train: Any, zoo: Any, probes: tuple[int, int], seed: int) -> dict[str, dict[str, float]]:
    """Per text model whose cost follows tokens: padded tokens of the stratified sample of every size the ranking
    and its probes may use (each distinct text tokenized once per model)."""
    from ..zoo import resolve_model

    sizes = sorted({*probes, *sample_sizes(len(train), probes[1])})
    samples = {n: list(train.stratified_sample(min(n, len(train)), seed=seed).items) for n in sizes}
    texts = sorted({t for items in samples.values() for t in items})
    out: dict[str, dict[str, float]] = {}
    for entry in zoo.models:
        try:
            lengths = resolve_model(entry.ref).token_lengths(texts)
        except Exception:  # an estimate only: such a model is costed per example
            continue
        if lengths is None:
            continue
        length = dict(zip(texts, (int(x) for x in lengths), strict=True))
        out[entry.ref] = {str(n): float(padded_tokens(np.array([length[t] for t in items])))
                          for n, items in samples.items()}
    return out


def mark_cached(cost: RankCost, train: Any, zoo: Any, n: int, image_size: int | None, seed: int) -> None:
    """Which models' features of the ranking's sample are in the feature cache already (then they cost ~nothing)."""
    from ..zoo import FeatureCache, cache_key, load_zoo, resolve_model

    ds = train.stratified_sample(n, seed=seed) if n < len(train) else train
    z = load_zoo(zoo) if not hasattr(zoo, "models") else zoo
    cache = FeatureCache()
    for entry in z.models:
        try:
            b = resolve_model(entry.ref)
            size = image_size or (b.default_size(ds) if hasattr(b, "default_size") else None)
            key = cache_key({"model": b.identity(), "preprocessing": b.preprocessing(size),
                             "dataset": ds.fingerprint, "n": len(ds)})
            cost.cached[entry.ref] = bool(cache.entry(key).done)
        except Exception:  # an estimate only: unknown means "not cached"
            cost.cached[entry.ref] = False


@dataclass
class FitCost:
    """One candidate under one method: set-up seconds, training seconds per example and epoch, and evaluation
    seconds per example; the parameter count decides LoRA."""

    setup: float
    train_per_example: float
    eval_per_example: float
    params: int
    #: the report's fixed seconds (its figures); Grad-CAM on a few test images is counted per example
    report_seconds: float = 4.0

    def estimate(self, n_train: int, n_val: int, n_test: int, epochs: int) -> float:
        report = self.report_seconds + 24 * 3 * self.eval_per_example
        return float(self.setup + epochs * (n_train * self.train_per_example + n_val * self.eval_per_example)
                     + n_test * self.eval_per_example + report)


def fit_cost(train: Any, model: str, method: str, image_size: int | None, seed: int,
             step: Any = None) -> FitCost:
    """Three probe fits on the same :func:`probe_sample` (no validation split): a warm-up on its batch shapes (the
    process's and the shapes' first-call costs), one epoch, then two epochs or more (:data:`PROBE_SECONDS`) tested
    on their own examples. The difference is epochs in steady state: the training time per example, whatever the
    fixed costs (they cancel: same examples, same batches). The test pass's seconds are the evaluation time per
    example; what the one-epoch fit spent besides its epoch is the set-up. ``step(what)``: told before each probe
    (the calibration's progress).

    (The slope between one-epoch fits on 64 and 192 examples it replaces put a batch shape's first-call costs on one
    of the two, and on a training split under 192 examples compared two sizes less than a batch apart: a 72-image
    split at 128 px was costed 8 ms per image and epoch for 32 measured.)"""
    from ..fit import fit

    sample, scale = probe_sample(train, model, seed)
    n = len(sample)
    # the warm-up trains on the sample's batch shapes (a full batch and its last, shorter one), spread over classes
    warm = sample.subset(np.unique(np.linspace(0, n - 1, FIT_BATCH + n % FIT_BATCH if n > FIT_BATCH else n).round()
                                   .astype(int)))
    say = step or (lambda what: None)
    runs: list[tuple[float, float]] = []
    with _quiet("transferlab.fit"):  # a one-epoch probe at chance is expected: no health warnings
        for k, (ds, test) in enumerate(((warm, warm), (sample, None), (sample, sample)), 1):
            # the last probe trains more epochs when one is short: the difference spans PROBE_SECONDS or more
            extra = min(PROBE_MAX_EXTRA, max(1, math.ceil(PROBE_SECONDS / max(runs[1][0], 1e-3)))) if k == 3 else 0
            epochs = 1 + extra
            say(f"probe fit {k}/3 of {model} ({method}, " + ("warm-up)" if k == 1 else
                f"{epochs} epoch{'s' if epochs > 1 else ''} on {n} examples)"))
            t0 = time.perf_counter()
            r = fit(ds, model, method, test=test, epochs=epochs, val_fraction=0.0, image_size=image_size, seed=seed)
            runs.append((float(r.metrics["train_seconds"]), time.perf_counter() - t0))
    _, (t1, wall1), (t2, wall2) = runs
    per = max((t2 - t1) / (epochs - 1), 0.3 * t2 / epochs) / n  # a noisy difference never far below the average
    ev = max(0.0, (wall2 - t2) - (wall1 - t1)) / n
    setup = max(0.0, wall1 - per * n)
    params = int(r.metrics.get("total_params") or 0)
    return FitCost(setup, per * scale, ev if method != "linear_probe" else per, params)


#: the batch size of auto's fits (fit's default) and how many of its batches the probe fits train on
FIT_BATCH = 32
PROBE_BATCHES = 4
#: fit's default truncation of texts (tokens)
FIT_MAX_LENGTH = 128
#: the probe fits' difference spans at least this many seconds of training (at most PROBE_MAX_EXTRA extra epochs): a
#: tiny model's epoch of 128 examples takes a few tenths of a second, within the noise of a busy machine
PROBE_SECONDS = 2.0
PROBE_MAX_EXTRA = 4


def probe_sample(train: Any, model: str, seed: int) -> tuple[Any, float]:
    """The probe fits' examples, and what a training example of the whole split costs against one of them.

    Images: a stratified sample of PROBE_BATCHES batches (at least two examples per class). Texts: the training
    loop batches texts of similar length (pools of 1,600 sorted by length, each batch padded to its longest), so a
    small sample of its own pads far more than the real fit does (Rotten Tomatoes: 77 padded tokens per text for 64
    texts, 44 for 192, 32 for 1,024 or more; one batch at 128 tokens costs as much as seven short ones). The sample
    is PROBE_BATCHES whole batches of the split's own length-sorted batches, evenly spaced from the shortest to the
    longest; the ratio is the split's padded tokens per text over the sample's (close to 1)."""
    n = max(PROBE_BATCHES * FIT_BATCH, -(-2 * train.num_classes // FIT_BATCH) * FIT_BATCH)
    if n >= len(train):
        return train, 1.0
    lengths = _fit_lengths(train, model) if train.modality == "text" else None
    if lengths is not None:
        order = np.argsort(-lengths, kind="stable")
        batches = [order[i:i + FIT_BATCH] for i in range(0, len(order), FIT_BATCH)]
        k = n // FIT_BATCH
        chosen = [batches[int((j + 0.5) * len(batches) / k)] for j in range(k)]
        idx = np.sort(np.concatenate(chosen))
        if len(np.unique(train.labels[idx])) >= 2:
            def per_text(b: list[np.ndarray]) -> float:
                return sum(len(x) * float(lengths[x].max()) for x in b) / sum(len(x) for x in b)

            return train.subset(idx), per_text(batches) / per_text(chosen)
    return train.stratified_sample(n, seed=seed), 1.0


def _fit_lengths(train: Any, model: str) -> np.ndarray | None:
    """Each training text's length in tokens as fit truncates it; None where unknown (then sampled as images)."""
    from ..zoo import resolve_model

    try:
        lengths = resolve_model(model).token_lengths(list(train.items))
    except Exception:  # an estimate only
        return None
    return None if lengths is None else np.minimum(np.asarray(lengths), FIT_MAX_LENGTH)
