"""Model merging: ``merge(method, base, finetuned, **options)``, ``merge_models(...)``, ``list_methods()``.

Methods: ``average``, ``task_arithmetic``, ``ties``, ``dare``, ``tsv``, ``iso``, ``wudi`` (data-free, streamed tensor by
tensor), ``fisher``, ``regmean``, ``regmean_pp`` (data-dependent statistics), ``atlas`` (learned per-tensor
coefficients). ``check_models`` (``merge --check``; its short form printed by every merge): whether the models can be
merged at all (one base, one tokenizer, task-vector sizes, cosines, sign conflicts). Any torch model: timm CNNs and
ViTs, transformers text encoders; peft LoRA adapters merge through their full ``B @ A`` updates.

A merge is also a recipe (``merge.yaml``: ``load_recipe``, ``resolve_recipe``, ``run_recipe``, ``MergeRecipe``), written next to every
merged model so it can be repeated.
"""

from ._api import MergeResult, list_methods, merge, merge_models, run_recipe
from ._compat import MergeCheck, check_models
from ._recipe import MergeRecipe, load_recipe, resolve_recipe
from ._registry import MERGE_METHODS

__all__ = ["MERGE_METHODS", "MergeCheck", "MergeRecipe", "MergeResult", "check_models", "list_methods", "load_recipe",
           "merge", "merge_models", "resolve_recipe", "run_recipe"]
