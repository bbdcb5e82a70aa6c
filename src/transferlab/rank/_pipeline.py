"""``rank`` in this process as a two-stage pipeline: the metrics of model k run in a worker thread while model k+1
extracts its features in this one (torch releases the GIL in its kernels, NumPy/SciPy in their linear algebra), so
a cold ranking costs about its forward passes plus the last model's metrics.

The results are those of scoring the models one after the other: each model's metrics read only its own features
and options, and the runs come back in the zoo's order. The first failure in the zoo's order is the error (a metric
stage that raised, e.g. a :class:`~transferlab.errors.TransferlabError`, surfaces as that same exception, before the
extraction of a later model that failed too); a metric that fails on one model is reported as before, inside its
stage. At most two extracted models wait for their metrics (memory: three models' features at once).

``threads=1`` (``--threads 1``: one core) keeps the stages in sequence; otherwise each stage runs under the same
limit (torch's intra-op threads and the BLAS threads: ``thread_limit``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from .._progress import progress as progress_bars
from ._model_run import ModelRun, Setup, extract_model, score_extracted, thread_limit


def score_zoo_local(setup: Setup, threads: int | None, progress: bool, overlap: bool | None = None) -> list[ModelRun]:
    """Every model of the zoo scored in this process, in the zoo's order, under the thread limit, with a progress bar
    per model. ``overlap`` (default: unless ``threads`` is 1): a model's metrics run while the next one extracts."""
    overlap = threads != 1 if overlap is None else overlap
    with thread_limit(threads), progress_bars(progress) as bars, _MetricStage(overlap) as stage:
        for entry, backbone in zip(setup.zoo.models, setup.backbones, strict=True):
            task = bars.add(entry.display_name, len(setup.ds))
            stage.raise_failed()  # an earlier model's metric stage raised: stop, as one after the other would
            try:
                got = extract_model(setup, backbone, (lambda k, task=task: bars.advance(task, k))
                                    if bars.enabled else None)
            except BaseException:
                stage.raise_failed(wait=True)  # an earlier failure comes first, as in sequence
                raise
            bars.describe(task, f"{entry.display_name} [dim]metrics")

            def scored(entry: Any = entry, backbone: Any = backbone, got: Any = got, task: Any = task) -> ModelRun:
                run = score_extracted(setup, entry, backbone, got)
                bars.describe(task, f"{entry.display_name} [green]done")
                return run

            stage.submit(scored)
        return stage.results()


class _MetricStage:
    """The metric stage: one worker thread taking models in order (``overlap``), or each model at once in the calling
    thread. Holds each model's future; at most two wait behind the one being extracted."""

    def __init__(self, overlap: bool) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="transferlab-rank-metrics") if overlap else None
        self._futures: list[Future[ModelRun]] = []

    def __enter__(self) -> _MetricStage:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._pool is not None:  # on an error: the queued models are dropped, the running one finishes
            self._pool.shutdown(wait=True, cancel_futures=exc is not None)

    def submit(self, fn: Callable[[], ModelRun]) -> None:
        if self._pool is None:
            done: Future[ModelRun] = Future()
            done.set_result(fn())  # in sequence: an error is raised here, as before
            self._futures.append(done)
            return
        if len(self._futures) >= 2:
            self._futures[-2].result()  # bound the features held; raises that model's error
        self._futures.append(self._pool.submit(fn))

    def raise_failed(self, wait: bool = False) -> None:
        """Raise the first error of the models submitted so far, in their order (``wait``: for those still running;
        else only of those done: the worker takes them in order, so a done failure is the first)."""
        for f in self._futures:
            if not wait and not f.done():
                return
            if f.exception() is not None:
                f.result()

    def results(self) -> list[ModelRun]:
        return [f.result() for f in self._futures]
