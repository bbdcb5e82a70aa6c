"""The bookkeeping of one ``transferlab auto`` run: the stage records in ``OUT/auto.json`` (what a rerun resumes
from), the budget's clock, the progress lines."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .._io import write_json_atomic
from .._version import __version__
from . import _plan as P

STATE = "auto.json"


class Run:
    """The bookkeeping of one run: the stage records in ``auto.json``, the clock, the console."""

    def __init__(self, work: Path | None, identity: dict[str, Any], budget: float, say: Any) -> None:
        self.work, self.identity, self.budget, self.say = work, identity, budget, say
        self.t0 = time.perf_counter()
        self.state: dict[str, Any] = {"identity": identity, "stages": {}, "transferlab_version": __version__}
        if work is not None and (work / STATE).is_file():
            old = json.loads((work / STATE).read_text())
            if old.get("identity") == identity:
                self.state = old
                done = [k for k, v in old["stages"].items() if v.get("done")]
                if done:
                    say(f"resuming: {', '.join(done)} done before ({P.fmt_seconds(self.spent_before())})")

    def spent_before(self) -> float:
        return float(sum(v.get("seconds", 0.0) for v in self.state["stages"].values()))

    def elapsed(self) -> float:
        """Seconds of the budget spent: earlier (killed) runs' finished stages plus this run so far."""
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

