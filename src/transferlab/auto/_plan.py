"""The plan of ``transferlab auto``: the budget, the stages and their time estimates, and the adaptation method chosen
from the budget and the data size.

Estimates come from measuring, not from tables: a probe ranking on a small stratified sample gives each model's
load time, forward time per example and metric time (extrapolated to the ranking's sample), and two one-epoch probe
fits of a candidate (on 32 and 96 examples) give its training time per example (the slope: fixed costs cancel) and
its set-up time. The plan is made twice: from the probe ranking's candidates (what ``--dry-run`` shows), and again
after the real ranking, for the models it chose."""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import TransferlabError

#: examples of the probe ranking and of the bigger probe fit
PROBE_RANK = (32, 128)
PROBE_FIT = (64, 192)
#: the ranking may take at most this share of the budget (its sample shrinks to fit)
RANK_SHARE = 0.3
#: most examples ranked: beyond this a ranking hardly changes (issue 11's many-class runs)
RANK_LIMIT = 2000
DISTILL_EPOCHS = 5  # epochs of distilling the ensemble into the kept model
#: validation accuracy the ensemble must gain over the better single model before it is distilled
ENSEMBLE_GAIN = 0.01
#: fine-tuning: at most this many epochs, stopped after patience(epochs) epochs without a better validation accuracy
MAX_EPOCHS = 15
MIN_EPOCHS = 3
PATIENCE = 3


def patience(epochs: int) -> int:
    """Epochs without a better validation accuracy before a fit stops: at least PATIENCE, and half the planned epochs
    (the learning rate decays over the planned epochs: a fit stopped early in a long schedule never reached its low
    rates — seen on Fashion-MNIST, where patience 3 stopped a 13-epoch fit at epoch 7, 2.6 points short)."""
    return max(PATIENCE, (epochs + 1) // 2)
#: held back for evaluating, writing the report and the unknown: a share of the budget
RESERVE_SHARE = 0.05
#: a linear probe of the top candidate runs beside its fine-tune (kept if its validation accuracy is as good) when it
#: costs at most this share of the budget: on easy targets a probe of a good model is already perfect, and a short
#: fine-tune can land a point below it (shapes: 0.987 against the probe's 1.000)
PROBE_SHARE = 0.1
#: fewer training examples per class than this: the linear probe (fine-tuning would overfit)
PROBE_ONLY_PER_CLASS = 10
#: full fine-tuning is not chosen: partial was as good or better on both built-in fit benchmarks, and a rule that
#: chose it from 1,000 examples per class scored 0.756 on Rotten Tomatoes where partial reaches 0.797
#: models with more parameters than this are adapted with LoRA (memory and time of full gradients)
LORA_PARAMS = 60_000_000


def parse_budget(budget: str | float | int) -> float:
    """``"15m"``, ``"90s"``, ``"1h"``, ``"1h30m"`` or a number of seconds, as seconds (> 0)."""
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        s = float(budget)
    else:
        text = str(budget).strip().lower().replace(" ", "")
        m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s?)?", text)
        if not text or m is None or not any(m.groups()):
            raise TransferlabError(f"--budget takes a duration such as 15m, 90s, 1h or 1h30m, got {budget!r}")
        h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
        s = 3600 * h + 60 * mi + sec
    if not (math.isfinite(s) and s > 0):
        raise TransferlabError(f"--budget must be a positive duration, got {budget!r}")
    return s


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


@dataclass
class Stage:
    name: str
    estimate: float  # seconds
    what: str
    why: str = ""
    measured: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why a planned stage did not run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    budget: float
    stages: list[Stage]
    candidates: list[str]
    method: str
    method_why: str
    notes: list[str] = field(default_factory=list)

    #: stages that run only in time the others leave: not part of the plan's total
    OPTIONAL = ("probe",)

    @property
    def estimate(self) -> float:
        return float(sum(s.estimate for s in self.stages if s.name not in self.OPTIONAL))

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(d["budget_seconds"], [Stage(**s) for s in d["stages"]], list(d["candidates"]), d["method"],
                   d["method_why"], list(d.get("notes") or []))

    def to_dict(self) -> dict[str, Any]:
        return {"budget_seconds": self.budget, "estimate_seconds": self.estimate, "candidates": self.candidates,
                "method": self.method, "method_why": self.method_why, "notes": self.notes,
                "stages": [s.to_dict() for s in self.stages]}


# ------------------------------------------------------------------------------------------------------- calibration
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


def rank_cost(train: Any, zoo: Any, image_size: int | None, seed: int) -> RankCost:
    """Rank two small stratified samples (no feature cache) after a warm-up: each model's costs from the two (the
    slope per example; weights load lazily on the first batch, so the intercept is the load), and a provisional
    order (the bigger probe's)."""
    from ..rank import rank
    from ..zoo import load_zoo

    z = load_zoo(zoo) if not hasattr(zoo, "models") else zoo
    quiet = logging.getLogger("transferlab.rank")  # a metric that fails on a probe's few examples per class is
    level = quiet.level                            # expected there; the real ranking reports its own failures
    quiet.setLevel(logging.ERROR)
    try:
        rank(train.stratified_sample(min(2 * train.num_classes, len(train)), seed=seed), [z.models[0].ref],
             image_size=image_size, use_cache=False, seed=seed)  # imports and first-call costs, paid once per process
        runs = []
        for n in PROBE_RANK:
            probe = train.stratified_sample(min(n, len(train)), seed=seed)
            res = rank(probe, z, image_size=image_size, use_cache=False, seed=seed)
            runs.append((len(probe), {m.model: m for m in res.models}))
    finally:
        quiet.setLevel(level)
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


def fit_cost(train: Any, model: str, method: str, image_size: int | None, seed: int) -> FitCost:
    """A warm-up fit, then two one-epoch probe fits (64 and 192 stratified examples, no validation split, tested on
    their own examples): the slope of the training time is the training time per example, the slope of the rest
    (the test pass) the evaluation time per example, and what is left at 192 examples the set-up."""
    from ..fit import fit

    pts, params = [], 0
    for k, n in enumerate((2 * train.num_classes, *PROBE_FIT)):
        ds = train.stratified_sample(min(n, len(train)), seed=seed)
        t0 = time.perf_counter()
        r = fit(ds, model, method, test=ds, epochs=1, val_fraction=0.0, image_size=image_size, seed=seed)
        wall = time.perf_counter() - t0
        if k:  # the first is the warm-up
            tr = float(r.metrics["train_seconds"])
            pts.append((len(ds), tr, wall - tr))
        params = int(r.metrics.get("total_params") or 0)
    (n1, t1, e1), (n2, t2, e2) = pts

    def slope(a: float, b: float) -> float:
        s = (b - a) / (n2 - n1) if n2 > n1 else b / max(n2, 1)
        return max(s, 0.3 * b / max(n2, 1))  # a noisy slope never far below the plain average

    per, ev = slope(t1, t2), slope(e1, e2)
    setup = max(0.0, e2 - ev * n2)
    return FitCost(setup, per, ev if method != "linear_probe" else per, params)


# -------------------------------------------------------------------------------------------------------- the choice
def choose_method(per_class: float, modality: str, params: int, fine_tune_epochs_affordable: int) -> tuple[str, str]:
    """The adaptation method and why, from the data size, the model size and the epochs the budget affords."""
    shown = f"{MAX_EPOCHS}+" if fine_tune_epochs_affordable > MAX_EPOCHS else str(fine_tune_epochs_affordable)
    if per_class < PROBE_ONLY_PER_CLASS:
        return "linear_probe", (f"{per_class:.0f} training examples per class: too few to fine-tune without "
                                "overfitting; a logistic regression on frozen features is the safe choice")
    if fine_tune_epochs_affordable < MIN_EPOCHS:
        return "linear_probe", (f"the budget affords {fine_tune_epochs_affordable} epoch(s) of fine-tuning (fewer than "
                                f"{MIN_EPOCHS}): the linear probe needs one pass over the data")
    if params > LORA_PARAMS:
        return "lora", (f"{params / 1e6:.0f}M parameters: LoRA (rank 8) trains 1-2 % of them at a fraction of the "
                        "memory, and matched full fine-tuning in our benchmarks")
    what = "transformer layers" if modality == "text" else "blocks"
    return "partial", (f"{per_class:.0f} examples per class and time for {shown} epochs: training "
                       f"the last two {what} and the head was the best strategy on both built-in benchmarks "
                       "(docs/benchmarks.md: 0.887 on Fashion-MNIST, 0.797 on Rotten Tomatoes), ahead of full "
                       "fine-tuning, with less to overfit")


def rank_sample(cost: RankCost, n_train: int, budget: float) -> int:
    """The largest ranking sample (at most RANK_LIMIT, the whole train split if smaller) whose estimate fits in
    RANK_SHARE of the budget; at least the probe's size."""
    for n in sample_sizes(n_train, cost.n_probe):
        if cost.estimate(n) <= RANK_SHARE * budget:
            return n
    return min(cost.n_probe, n_train)


def epochs_affordable(cost: FitCost, n_train: int, n_val: int, n_test: int, seconds: float) -> int:
    per_epoch = n_train * cost.train_per_example + n_val * cost.eval_per_example
    fixed = cost.estimate(n_train, n_val, n_test, 0)
    return int(max(0.0, seconds - fixed) // per_epoch) if per_epoch > 0 else MAX_EPOCHS


def split_sizes(n: int, val_fraction: float = 0.1) -> tuple[int, int]:
    n_val = int(round(n * val_fraction))
    return n - n_val, n_val


def summary_line(plan: Plan) -> str:
    return (f"plan: {fmt_seconds(plan.estimate)} of a {fmt_seconds(plan.budget)} budget; method {plan.method}; "
            f"candidates {', '.join(plan.candidates)}")


def measured_text(s: Stage) -> str:
    return "skipped" if s.skipped else fmt_seconds(s.measured)
