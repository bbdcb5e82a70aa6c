"""Continual transfer: one model on a stream of tasks (task- or class-incremental) with ``naive``, ``joint``,
``replay``, ``ewc``, ``lwf``, ``supsup`` and ``exssnet`` on the one training loop, and the GEM metrics of the accuracy matrix."""

from ._api import ContinualResult, list_strategies, run
from ._metrics import summary
from ._strategies import STRATEGIES
from ._streams import Stream, Task, class_split, parse_stream, task_stream

__all__ = ["STRATEGIES", "ContinualResult", "Stream", "Task", "class_split", "list_strategies", "parse_stream", "run",
           "summary", "task_stream"]
