"""Continual transfer: one model on a stream of tasks (task- or class-incremental; ``builtin:stream-long``) with
``naive``, ``joint``, ``replay``, ``ewc``, ``lwf``, ``supsup``, ``exssnet``, ``gpm`` and ``cuber`` on the one training
loop, the closed-form heads ``prototype`` and ``ranpac`` on a frozen backbone, and ``ease``'s per-task adapters; the
GEM metrics of the accuracy matrix."""

from ._api import ContinualResult, list_strategies, run
from ._metrics import summary
from ._strategies import STRATEGIES
from ._streams import Stream, Task, class_split, parse_stream, task_stream

__all__ = ["STRATEGIES", "ContinualResult", "Stream", "Task", "class_split", "list_strategies", "parse_stream", "run",
           "summary", "task_stream"]
