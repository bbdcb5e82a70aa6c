"""Distillation: one or many frozen teachers into a small student, on the one training loop (``kd``, ``multi_avg``,
``multi_weighted``, ``kl_dp``, ``feature``, ``dkd``), with the transfer evidence."""

from ._api import DistillResult, distill, latency_ms, list_methods
from ._methods import METHODS

__all__ = ["METHODS", "DistillResult", "distill", "latency_ms", "list_methods"]
