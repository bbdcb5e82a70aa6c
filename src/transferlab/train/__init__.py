"""THE training loop: every capability that trains (fit, merge-learning, the small-zoo build, and domain, distill,
continual to come) calls :func:`train` with its :class:`Objective`."""

from ._arguments import check_run_arguments
from ._config import TrainConfig, TrainResult
from ._loop import evaluate, train
from ._objective import Objective, StepContext, Supervised, accuracy
from ._probe import logistic_probe, probe_accuracy
from ._state import seed_everything

__all__ = ["Objective", "StepContext", "Supervised", "TrainConfig", "TrainResult", "accuracy", "check_run_arguments", "evaluate",
           "logistic_probe", "probe_accuracy", "seed_everything", "train"]
