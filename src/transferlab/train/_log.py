"""Per-epoch training logs for the tools users already have (``--log-dir``): ``train_log.csv`` (one row per epoch,
every logged value) and, where the tensorboard package is installed, TensorBoard event files (``tensorboard
--logdir DIR``). Written by rank 0 of a distributed run only."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EpochLog:
    """Appends each epoch's row (``None``: logs nothing)."""

    def __init__(self, directory: str | Path | None) -> None:
        self.dir = Path(directory) if directory else None
        self.rows: list[dict[str, Any]] = []
        self._tb: Any = None
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir))
        except ImportError:
            log.info("--log-dir %s: the tensorboard package is not installed; writing train_log.csv only "
                     "(pip install tensorboard for event files)", self.dir)

    def write(self, row: dict[str, Any]) -> None:
        if self.dir is None:
            return
        from .._io import write_text_atomic

        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.rows.append(scalars)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))  # a later epoch may log more (a selector)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        write_text_atomic(self.dir / "train_log.csv", buf.getvalue())
        if self._tb is not None:
            step = int(row.get("epoch", len(self.rows)))
            for k, v in scalars.items():
                if k != "epoch":
                    self._tb.add_scalar(k, float(v), step)
            self._tb.flush()
