"""Model merging: ``merge(method, base, finetuned, **options)``, ``merge_models(...)``, ``list_methods()``.

Methods: ``average``, ``task_arithmetic``, ``ties``, ``dare`` (data-free, streamed tensor by tensor), ``fisher``,
``regmean`` (data-dependent statistics), ``atlas`` (learned per-tensor coefficients). Any torch model: timm CNNs and
ViTs, transformers text encoders; peft LoRA adapters merge through their full ``B @ A`` updates.
"""

from ._api import MergeResult, list_methods, merge, merge_models
from ._registry import MERGE_METHODS

__all__ = ["MERGE_METHODS", "MergeResult", "list_methods", "merge", "merge_models"]
