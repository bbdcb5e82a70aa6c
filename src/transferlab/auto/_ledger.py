"""The bookkeeping of one ``transferlab auto`` run: the stage records in ``OUT/auto.json`` (what a rerun resumes
from), the budget's clock, the progress lines."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._io import write_json_atomic
from .._version import __version__
from ..errors import TransferlabError
from . import _plan as P

STATE = "auto.json"


class Ledger:
    """The bookkeeping of one run: the stage records in ``auto.json``, the clock, the console (``say`` prints a line;
    ``progress``: whether long steps show a bar)."""

    def __init__(self, work: Path | None, identity: dict[str, Any], budget: float, say: Any,
                 progress: bool = False) -> None:
        self.work, self.identity, self.budget, self.say, self.progress = work, identity, budget, say, progress
        self.t0 = time.perf_counter()
        self.state: dict[str, Any] = {"identity": identity, "stages": {}, "transferlab_version": __version__}
        if work is not None and (work / STATE).is_file():
            try:
                old = json.loads((work / STATE).read_text())
                same = old.get("identity") == identity and isinstance(old.get("stages"), dict)
            except (OSError, ValueError, AttributeError):
                raise TransferlabError(f"{work / STATE} is damaged: remove {work} (or choose another --out) to start "
                                       "again") from None
            if same:
                self.state = old
                done = [k for k, v in old["stages"].items() if v.get("done")]
                if done:
                    say(f"resuming: {', '.join(done)} done before ({P.fmt_seconds(self.spent_before())})")
            else:  # another run's stages: nothing of them is reused
                shutil.rmtree(work / "work", ignore_errors=True)
                say(f"{work} held an unfinished auto run with other arguments: starting again")

    def spent_before(self) -> float:
        return float(sum(v.get("seconds", 0.0) for v in self.state["stages"].values()))

    def elapsed(self) -> float:
        """Seconds of the budget spent: earlier (killed) runs' finished stages plus this run so far (the unfinished
        stage of a killed run is not counted: its finished epochs are kept in its checkpoints)."""
        return self.spent_before() + (time.perf_counter() - self.t0) - self._counted

    _counted = 0.0

    def left(self) -> float:
        return self.budget - self.elapsed()

    def done(self, name: str) -> dict[str, Any] | None:
        s = self.state["stages"].get(name)
        return s if s and s.get("done") else None

    def record(self, name: str, seconds: float, **info: Any) -> None:
        self.state["stages"][name] = {"done": True, "seconds": seconds, **info}
        self._counted += seconds  # now part of spent_before()
        if self.work is not None:
            write_json_atomic(self.work / STATE, self.state)


    def save_plan(self, plan: P.Plan) -> None:
        """The plan a resumed run follows (its fits resume only with the same epochs)."""
        self.state["plan"] = plan.to_dict()
        if self.work is not None:
            write_json_atomic(self.work / STATE, self.state)

    def path(self, recorded: str | None) -> Path | None:
        """A stage directory recorded relative to the work directory, as a path."""
        return None if recorded is None or self.work is None else self.work / recorded


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' per-load progress bars ("Loading weights", for each of the dozen loads of a text model in one
    run) and its load reports and warnings off while a run loads models; the caller's settings back after, and the
    Hugging Face hub's download bars kept (a first download is long). transferlab's own progress is not
    transformers': it stays. Usable as a decorator."""
    try:
        from huggingface_hub import utils as hub
        from transformers.utils import logging as hf_logging
    except ImportError:  # no text extra: nothing to quiet
        yield
        return
    bars, level, downloads = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity(), \
        not hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # transformers' own bars, and the hub's with them
    if downloads:
        hub.enable_progress_bars()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if not downloads:
            hub.disable_progress_bars()
