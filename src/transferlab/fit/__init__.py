"""Adaptation: ``fit(dataset, model, method, ...)``, ``list_methods()``, ``load(model_dir)``.

This release: image models from timm / the built-in EfficientNet-Lite zoo; methods ``linear_probe`` (logistic
regression on cached features), ``head``, ``bitfit``, ``partial`` and ``finetune`` through the shared training loop.
"""

from ._api import (
    FitResult,
    adds_modules,
    architecture_key,
    evaluate_model,
    fit,
    head_prefix,
    list_methods,
    load,
    model_inputs,
    predict,
    pretrained,
)
from ._data import split_validation
from ._registry import METHODS

__all__ = ["FitResult", "METHODS", "adds_modules", "architecture_key", "evaluate_model", "fit", "head_prefix",
           "list_methods", "load", "model_inputs", "predict", "pretrained", "split_validation"]
