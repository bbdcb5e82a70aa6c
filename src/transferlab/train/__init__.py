"""THE training loop: every capability that trains (fit, domain, distill, continual, merge-learning, the small-zoo
build) calls :func:`train` with its :class:`Objective`; the loop owns devices, modes, checkpoints and batch-norm
statistics (:func:`reestimate_norms_`)."""

from ._arguments import check_run_arguments
from ._config import TrainConfig, TrainResult
from ._loop import evaluate, train
from ._norms import norm_layers, reestimate_norms_
from ._objective import Objective, StepContext, Supervised, accuracy
from ._probe import logistic_probe, probe_accuracy
from ._state import seed_everything

__all__ = ["Objective", "StepContext", "Supervised", "TrainConfig", "TrainResult", "accuracy", "check_run_arguments", "evaluate",
           "logistic_probe", "norm_layers", "probe_accuracy", "reestimate_norms_", "seed_everything", "train"]
