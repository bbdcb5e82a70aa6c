"""The numbers every training run takes, refused before any work with the argument's name (``--lr nan``,
``--epochs 0``): one check for fit, domain, distill and continual."""

from __future__ import annotations

import math
from typing import Any

from ..errors import TransferlabError


def _bad(name: str, value: Any, want: str) -> TransferlabError:
    return TransferlabError(f"{name} must be {want}, got {value!r}")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_run_arguments(*, epochs: int, batch_size: int, lr: float | None = None, image_size: int | None = None,
                        patience: int | None = None, budget_minutes: float | None = None,
                        val_fraction: float | None = None, min_batch_size: int = 1) -> None:
    """``epochs`` and ``patience`` whole numbers >= 1, ``batch_size`` >= ``min_batch_size`` (2 where a step pairs or
    normalises examples), ``image_size`` >= 8 pixels, ``lr`` and ``budget_minutes`` finite and > 0, ``val_fraction``
    in [0, 1)."""
    for name, v, least in (("epochs", epochs, 1), ("batch_size", batch_size, min_batch_size),
                           ("patience", patience, 1)):
        if name == "patience" and v is None:
            continue
        if not _whole(v) or v < least:
            raise _bad(name, v, f"a whole number >= {least}")
    if image_size is not None and (not _whole(image_size) or image_size < 8):
        raise _bad("image_size", image_size, "a whole number of pixels >= 8")
    for name, f in (("lr", lr), ("budget_minutes", budget_minutes)):
        if f is not None and not (isinstance(f, (int, float)) and math.isfinite(f) and f > 0):
            raise _bad(name, f, "a finite number > 0")
    if val_fraction is not None and not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 1):
        raise _bad("val_fraction", val_fraction, "in [0, 1)")
