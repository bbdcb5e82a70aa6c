"""THE training loop: every capability that trains (fit, domain, distill, merge-learning, bench) calls it."""

from .loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
