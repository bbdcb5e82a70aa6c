"""Adaptation: ``fit(dataset, model, method, ...)``, ``list_methods()``, ``load(model_dir)``.

This release: image models from timm / the built-in EfficientNet-Lite zoo; methods ``linear_probe`` (logistic
regression on cached features), ``head``, ``bitfit``, ``partial`` and ``finetune`` through the shared training loop.
"""

from ._api import FitResult, evaluate_model, fit, list_methods, load, predict
from ._registry import METHODS

__all__ = ["FitResult", "METHODS", "evaluate_model", "fit", "list_methods", "load", "predict"]
