"""Distillation: one or many frozen teachers into a small student, on the one training loop (``kd``, ``multi_avg``,
``multi_weighted``, ``kl_dp``, ``feature``, ``dkd``, ``dist``), with the transfer evidence; novel-class discovery
with class-relation distillation (``discover``)."""

from ._api import DistillResult, distill, latency_ms, list_methods
from ._methods import METHODS
from ._ncd import DiscoveryResult, discover

__all__ = ["METHODS", "DiscoveryResult", "DistillResult", "discover", "distill", "latency_ms", "list_methods"]
