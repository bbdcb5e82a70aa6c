"""THE training loop: every capability that trains (fit, domain, distill, continual, merge-learning, the small-zoo
build) calls :func:`train` with its :class:`Objective`; the loop owns devices, modes, checkpoints and batch-norm
statistics (:func:`reestimate_norms_`), and one run on several processes (torchrun, or ``devices=N``:
:func:`on_devices`)."""

from ._arguments import check_run_arguments
from ._config import TrainConfig, TrainResult
from ._distributed import is_main, on_devices, world
from ._health import CHANCE_MARGIN, chance_level, health_warnings
from ._loop import evaluate, train
from ._norms import norm_layers, reestimate_norms_
from ._objective import Objective, StepContext, Supervised, accuracy
from ._probe import logistic_probe, probe_accuracy
from ._state import seed_everything

__all__ = ["CHANCE_MARGIN", "Objective", "StepContext", "Supervised", "TrainConfig", "TrainResult", "accuracy", "chance_level", "check_run_arguments", "health_warnings", "evaluate",
           "is_main", "logistic_probe", "norm_layers", "on_devices", "probe_accuracy", "reestimate_norms_", "seed_everything", "train",
           "world"]
