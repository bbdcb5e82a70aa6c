"""The bench harness: every bench is a grid of :class:`Job`\\ s — a run function of plain, picklable arguments — run by
a backend, each record cached under a key of (the bench, its format version, every input that changes the result),
so a killed bench resumes job by job.

Progress is never silent: on a terminal, one rich bar with the job in hand; in a pipe (CI, ``nohup ... > log``), one
plain line per finished job with its figure, the count and an ETA, and a heartbeat line at least every
``$TRANSFERLAB_HEARTBEAT_SECONDS`` (default 60) while a long job runs.

A backend runs the jobs that are not cached: :class:`LocalBackend` one after the other in this process,
:class:`RayBackend` as Ray tasks (a local Ray instance or a cluster's address). A job's function must be importable
by name (a module-level function) for Ray; its arguments and record must be plain data."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._io import write_json_atomic
from .._progress import clock
from ..errors import TransferlabError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One run of a bench: ``fn(**kwargs)`` returns its record (a JSON-able dict). ``key``: every input that changes
    the record (default: ``kwargs``); ``label``: how progress names it; ``needs``: files the job leaves behind for
    later jobs (a model directory's weights): a cached record whose files are gone is run again."""

    label: str
    fn: Callable[..., dict[str, Any]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    key: Mapping[str, Any] | None = None
    needs: tuple[str, ...] = ()

    def cache_name(self, bench: str, version: int) -> str:
        body = {"bench": bench, "format": version, "key": self.key if self.key is not None else self.kwargs}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Backend(Protocol):
    """Runs jobs (it reads a job's ``label``, ``fn`` and ``kwargs``): ``started(i)`` when job ``i`` begins (where the
    backend knows), ``finished(i, record)`` when it returns, ``failed(i, error)`` when it raises — the other jobs go
    on. A :class:`KeyboardInterrupt` stops everything."""

    name: str

    def run(self, jobs: Sequence[Any], started: Callable[[int], None],
            finished: Callable[[int, dict[str, Any]], None], failed: Callable[[int, BaseException], None]) -> None: ...


class LocalBackend:
    """One job after the other, in this process."""

    name = "local"

    def run(self, jobs: Sequence[Any], started: Callable[[int], None],
            finished: Callable[[int, dict[str, Any]], None], failed: Callable[[int, BaseException], None]) -> None:
        for i, job in enumerate(jobs):
            started(i)
            try:
                record = job.fn(**job.kwargs)
            except Exception as exc:  # reported, and the next job runs; KeyboardInterrupt stops the bench
                failed(i, exc)
            else:
                finished(i, record)


class RayBackend:
    """Every job as a Ray task of ``num_cpus`` CPUs and ``num_gpus`` GPUs, on the instance at ``address`` (None:
    ``$RAY_ADDRESS``, else a local instance; started and stopped here unless Ray is already initialised). Records
    come back to this process, which caches them. A task whose worker dies (killed, out of memory, a lost node) is
    run again up to ``max_retries`` times (Ray's retry of system failures); a task that raises is not retried: its
    error is reported and the other tasks go on."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 max_retries: int = 3) -> None:
        if not num_cpus > 0 or num_gpus < 0:
            raise TransferlabError(f"a Ray run needs more than 0 CPUs and at least 0 GPUs, got cpus_per_run="
                                   f"{num_cpus}, gpus_per_run={num_gpus}")
        self.address, self.num_cpus, self.num_gpus, self.max_retries = address, num_cpus, num_gpus, max_retries

    def run(self, jobs: Sequence[Any], started: Callable[[int], None],
            finished: Callable[[int, dict[str, Any]], None], failed: Callable[[int, BaseException], None]) -> None:
        try:
            import ray
        except ImportError:
            raise TransferlabError("--backend ray needs Ray: pip install 'transferlab[ray]'") from None
        own = not ray.is_initialized()
        if own:
            ray.init(address=self.address, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        pending: dict[Any, int] = {}
        try:
            remote: dict[Any, Any] = {}
            shared = _shared_arguments(jobs, ray.put)
            for i, job in enumerate(jobs):
                if job.fn not in remote:
                    remote[job.fn] = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                max_retries=self.max_retries)(job.fn)
                kwargs = {k: shared.get(id(v), v) for k, v in job.kwargs.items()}
                pending[remote[job.fn].remote(**kwargs)] = i
                started(i)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the job raised: its own error
                        failed(i, exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc)
                    except ray.exceptions.RayError as exc:  # its worker died more often than retried, ...
                        failed(i, exc)
                    else:
                        finished(i, record)
        finally:
            for ref in pending:  # interrupted: nothing left running for nobody
                ray.cancel(ref, force=True)
            if own:
                ray.shutdown()


def _shared_arguments(jobs: Sequence[Any], put: Callable[[Any], Any]) -> dict[int, Any]:
    """An object store reference for every argument object that several jobs share (rank's dataset): stored once,
    not once per task (Ray hands a task the value of a reference it gets as an argument)."""
    seen: dict[int, int] = {}
    objects: dict[int, Any] = {}
    for job in jobs:
        for v in job.kwargs.values():
            if not isinstance(v, (str, int, float, bool, type(None))):
                seen[id(v)] = seen.get(id(v), 0) + 1
                objects[id(v)] = v
    return {k: put(objects[k]) for k, n in seen.items() if n > 1}


def asked_runtime(device: str | None, precision: str | None) -> dict[str, str]:
    """The device and precision a bench was asked for (those not None): what a job's cache key and the name of a
    folder it leaves for later jobs add to the job's own inputs."""
    return {k: v for k, v in (("device", device), ("precision", precision)) if v is not None}


def folder_key(key: Mapping[str, Any], device: str | None = None, precision: str | None = None) -> str:
    """Eight hex digits for the name of a folder that a job leaves for later jobs (a fit's model): of ``key`` (every
    input that changes what the folder holds) and the device and precision asked for, as a job's cache key is. Runs
    of other settings then never share a folder: one of them refitting there would leave its model under the other's
    cached record."""
    body = json.dumps({"key": key, **asked_runtime(device, precision)}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:8]


def check_option_names(given: Iterable[str], known: Sequence[str], what: str) -> None:
    """``--option NAME.KEY=VALUE``'s names, before any work: one that is no ``what`` (a typo) is refused with the
    known names; its options would be silently unused."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TransferlabError(f"--option for {', '.join(unknown)}: no such {what}; known: {', '.join(known)}")


def fmt(value: Any, digits: int = 3) -> str:
    """A figure for a progress line: floats to ``digits`` decimals, None as "n/a"."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def backend_of(backend: str | Backend, address: str | None = None, cpus_per_run: float | None = None,
               gpus_per_run: float | None = None) -> Backend:
    """A backend by name (``local``, ``ray``), or the one given. ``address``, ``cpus_per_run`` (default 1) and
    ``gpus_per_run`` (default 0) are the Ray backend's; the local backend runs in this process and ignores the
    address (so ``$RAY_ADDRESS`` may stay set) but cannot give a run GPUs or CPUs of its own."""
    if not isinstance(backend, str):
        return backend
    if backend == "local":
        if cpus_per_run is not None or gpus_per_run:
            raise TransferlabError("--cpus-per-run and --gpus-per-run are resources of a Ray task: use them with "
                                   "--backend ray (the local backend runs one job at a time in this process)")
        return LocalBackend()
    if backend == "ray":
        return RayBackend(address, 1 if cpus_per_run is None else cpus_per_run, gpus_per_run or 0)
    raise TransferlabError(f"unknown backend {backend!r}; choose local or ray")


def _failures(bench: str, labels: Sequence[str], errors: Sequence[BaseException], total: int,
              cached: bool) -> TransferlabError:
    """One error naming every failed job (its label and error) of ``total``."""
    lines = "".join(f"\n  {label}: {e if isinstance(e, TransferlabError) else f'{type(e).__name__}: {e}'}"
                    for label, e in zip(labels, errors, strict=True))
    rest = total - len(labels)
    return TransferlabError(f"bench {bench}: {len(labels)} of {total} runs failed" + (
        f" (the other {rest} finished{'; they are cached: a rerun runs only the failed ones' if cached else ''})"
        if rest else "") + f":{lines}")


def run_in_runtime(fn: Callable[..., dict[str, Any]], kwargs: Mapping[str, Any], device: str | None,
                   precision: str | None) -> dict[str, Any]:
    """``fn(**kwargs)`` on ``device`` at ``precision`` (:func:`transferlab._runtime.runtime`, on the machine the job
    runs on): what a job becomes when the bench is asked for a device or a precision."""
    from .._runtime import runtime

    with runtime(device, precision):
        return fn(**kwargs)


def _in_runtime(job: Job, device: str | None, precision: str | None) -> Job:
    """``job`` run inside that runtime, its key extended by the device and precision asked for."""
    asked = asked_runtime(device, precision)
    return Job(job.label, run_in_runtime, {"fn": job.fn, "kwargs": dict(job.kwargs), **{"device": device,
                                                                                          "precision": precision}},
               key={"job": job.key if job.key is not None else job.kwargs, **asked}, needs=job.needs)


def run_jobs(jobs: Sequence[Job], *, bench: str, version: int, cache: str | Path | None, progress: bool = False,
             backend: str | Backend = "local", figure: Callable[[dict[str, Any]], str] | None = None,
             device: str | None = None, precision: str | None = None) -> list[dict[str, Any]]:
    """Every job's record, in the jobs' order: read from ``cache`` (a directory; None: no cache) when there, else run by
    ``backend`` and written there as it finishes (a damaged record is run again). ``figure(record)``: the short
    result a progress line shows (e.g. ``acc 0.812``). A job that raises is reported (logged, and on the progress
    display) and the others run; then one :class:`TransferlabError` names every failed job and its error (the
    finished ones are cached, so a rerun runs only the failed ones). ``device``/``precision``: each job runs in that
    runtime where it runs (None: the default there, and the job's cache key as without them)."""
    be = backend_of(backend)
    if device is not None or precision is not None:
        from .._runtime import check_device, check_precision

        device, precision = device and check_device(device), precision and check_precision(precision)
        jobs = [_in_runtime(j, device, precision) for j in jobs]
    records: list[dict[str, Any] | None] = [None] * len(jobs)
    paths = _cached(jobs, bench, version, cache, records)
    todo = [i for i, r in enumerate(records) if r is None]
    errors: dict[int, BaseException] = {}
    with _Progress(f"bench {bench}", len(jobs), len(jobs) - len(todo), progress) as shown:
        def started(k: int) -> None:
            shown.start(jobs[todo[k]].label)

        def finished(k: int, record: dict[str, Any]) -> None:
            i = todo[k]
            records[i] = record
            if paths[i] is not None:
                write_json_atomic(paths[i], record)  # type: ignore[arg-type]
            shown.done(jobs[i].label, figure(record) if figure is not None else "")

        def failed(k: int, error: BaseException) -> None:
            i = todo[k]
            errors[i] = error
            log.error("bench %s: %s failed: %s", bench, jobs[i].label, error,
                      exc_info=None if isinstance(error, TransferlabError) else error)
            shown.done(jobs[i].label, f"FAILED: {error}")

        be.run([jobs[i] for i in todo], started, finished, failed)
    if errors:
        order = sorted(errors)
        raise _failures(bench, [jobs[i].label for i in order], [errors[i] for i in order], len(jobs),
                        cache is not None) from errors[order[0]]
    return [r for r in records if r is not None]


def _cached(jobs: Sequence[Job], bench: str, version: int, cache: str | Path | None,
            records: list[dict[str, Any] | None]) -> list[Path | None]:
    """Each job's record file (None without a cache); the records found there filled into ``records``."""
    paths: list[Path | None] = [None] * len(jobs)
    if cache is None:
        return paths
    Path(cache).mkdir(parents=True, exist_ok=True)
    for i, job in enumerate(jobs):
        paths[i] = p = Path(cache) / f"{job.cache_name(bench, version)}.json"
        if p.is_file() and all(Path(f).exists() for f in job.needs):
            try:
                records[i] = json.loads(p.read_text())
            except (OSError, ValueError):
                log.warning("%s: damaged cached run %s: running it again", bench, p.name)
    return paths


class _Progress:
    """One bar on a terminal; plain lines in a pipe (one per finished job, a heartbeat while one runs)."""

    def __init__(self, title: str, total: int, cached: int, enabled: bool) -> None:
        self.title, self.total, self.cached, self.enabled = title, total, cached, enabled
        self.finished = cached
        self.heartbeat = float(os.environ.get("TRANSFERLAB_HEARTBEAT_SECONDS", "60"))
        self._running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bars: Any = None
        self._ctx: Any = None
        self._pipe = False

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        from rich.console import Console

        self.t0 = self._last = time.monotonic()
        self._pipe = not Console(stderr=True).is_terminal
        if self._pipe:
            self._say(f"{self.title}: {self.total} runs" + (f", {self.cached} cached" if self.cached else ""))
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        else:
            from .._progress import progress as progress_bars

            self._ctx = progress_bars(True)
            self._bars = self._ctx.__enter__()
            self._task = self._bars.add(self.title, self.total, note=f"{self.cached} cached" if self.cached else "")
            self._bars.advance(self._task, self.cached)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ctx is not None:
            self._ctx.__exit__(*exc)

    def start(self, label: str) -> None:
        with self._lock:
            self._running[label] = time.monotonic()
        if self._bars is not None:
            self._bars.note(self._task, label)

    def done(self, label: str, figure: str) -> None:
        with self._lock:
            self._running.pop(label, None)
            self.finished += 1
        if not self.enabled:
            return
        if self._bars is not None:
            self._bars.advance(self._task, note=f"{label}: {figure}" if figure else label)
            return
        now = time.monotonic()
        ran = self.finished - self.cached
        left = self.total - self.finished
        eta = f", ETA {clock((now - self.t0) / ran * left)}" if ran and left else ""
        self._say(f"{self.title} {self.finished}/{self.total}: {label}" + (f": {figure}" if figure else "")
                  + f" ({clock(now - self.t0)} elapsed{eta})")

    def _beat(self) -> None:
        while not self._stop.wait(min(5.0, self.heartbeat)):
            now = time.monotonic()
            with self._lock:
                running = dict(self._running)
            if running and now - self._last >= self.heartbeat:
                label, since = min(running.items(), key=lambda kv: kv[1])
                more = f" and {len(running) - 1} more" if len(running) > 1 else ""
                self._say(f"{self.title} {self.finished}/{self.total}: running {label}{more} "
                          f"({clock(now - since)} in this run)")

    def _say(self, line: str) -> None:
        self._last = time.monotonic()
        print(line, file=sys.stderr, flush=True)

