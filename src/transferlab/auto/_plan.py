"""The plan of ``transferlab auto`` as data: the budget, the stages and their time estimates, and the adaptation
method chosen from the budget and the data size. Estimates come from measuring, not from tables (``_costs``); the
plan is made (``_planning``) twice: from the probe ranking's candidates (what ``--dry-run`` shows), and again after the
real ranking, for the models it chose."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import TransferlabError
from ._costs import FitCost, RankCost, sample_sizes

#: the ranking may take at most this share of the budget (its sample shrinks to fit)
RANK_SHARE = 0.3
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


def budget_text(seconds: float) -> str:
    """A ``--budget`` value of at least ``seconds``: whole seconds under two minutes, else whole minutes."""
    return f"{math.ceil(seconds)}s" if seconds < 120 else f"{math.ceil(seconds / 60)}m"


#: what the cheapest plan's least work costs at least, on any machine: a tenth of the fastest we measured (warm
#: process, the built-in tiny models at 32 px on a busy 2-core CPU: a ranking call 0.11 s beside its models, each
#: model in a ranking 25 ms, a fit 0.1 s) — per-call overheads are Python's, and no machine runs them ten times
#: faster — and 5 microseconds per example a torch model reads (a tenth of the tiny models' ~0.25 ms at 32 px)
FLOOR_RANK_CALL = 0.01
FLOOR_MODEL_RUN = 0.0025
FLOOR_FIT_CALL = 0.01
FLOOR_EXAMPLE = 5e-6


def floor_seconds(n_models: int, n_train: int, n_test: int) -> float:
    """A lower bound of the cheapest plan's seconds, known before calibrating: the calibration (a warm-up ranking of
    one model, two probe rankings of every model, three probe fits), the ranking, and a linear probe that reads
    every training and test example, each at floor prices."""
    rank_calls, model_runs, fit_calls = 4, 1 + 3 * n_models, 4
    examples = n_models * (32 + 128 + min(n_train, 128)) + 4 * min(n_train, 128) + n_train + n_test
    return (rank_calls * FLOOR_RANK_CALL + model_runs * FLOOR_MODEL_RUN + fit_calls * FLOOR_FIT_CALL
            + examples * FLOOR_EXAMPLE)


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
