"""Model merging: ``merge(method, base, finetuned, **options)``, ``merge_models(...)``, ``list_methods()``.

Methods: ``average``, ``task_arithmetic``, ``ties``, ``dare``, ``tsv``, ``iso`` (data-free, streamed tensor by tensor), ``fisher``,
``regmean`` (data-dependent statistics), ``atlas`` (learned per-tensor coefficients). Any torch model: timm CNNs and
ViTs, transformers text encoders; peft LoRA adapters merge through their full ``B @ A`` updates.

A merge is also a recipe (``merge.yaml``: ``load_recipe``, ``resolve_recipe``, ``run_recipe``, ``MergeRecipe``), written next to every
merged model so it can be repeated.
"""

from ._api import MergeResult, list_methods, merge, merge_models, run_recipe
from ._recipe import MergeRecipe, load_recipe, resolve_recipe
from ._registry import MERGE_METHODS

__all__ = ["MERGE_METHODS", "MergeRecipe", "MergeResult", "list_methods", "load_recipe", "merge", "merge_models",
           "resolve_recipe", "run_recipe"]
