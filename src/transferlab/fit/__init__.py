"""Adaptation: ``fit(dataset, model, method, ...)`` and ``list_methods()``; the adapted model is saved and loaded by
:mod:`transferlab.models` (``load``, ``predict``, ``evaluate``).

Methods are registry entries (``METHODS``): ``linear_probe`` (logistic regression on cached features), ``head``,
``bitfit``, ``partial``, ``finetune`` (+ L2-SP, BSS), ``lora``/``dora``/``ia3`` through peft, unified-view
``adapter``/``mam``, ``sparse`` (LT-SFT) and ``scalearn``, all trained by the one loop in :mod:`transferlab.train`.
"""

from ._api import FitResult, fit, list_methods
from ._registry import METHODS, FitContext, Prepared

__all__ = ["METHODS", "FitContext", "FitResult", "Prepared", "fit", "fit_label_augmented", "list_methods"]


def __getattr__(name: str) -> object:
    """``fit_label_augmented`` (SLA) on first use: its module defines torch modules (importing fit imports no torch)."""
    if name == "fit_label_augmented":
        from ._sla import fit_label_augmented

        return fit_label_augmented
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
