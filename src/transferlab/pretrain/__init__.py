"""Pretraining on source tasks: ``build_zoo`` (re)builds the small built-in zoo deterministically; ``pretrain``
trains one small architecture from scratch on any image source (a pruned one included) into a model directory."""

from ._small import ARCHITECTURES, PretrainResult, build_model, build_zoo, pretrain

__all__ = ["ARCHITECTURES", "PretrainResult", "build_model", "build_zoo", "pretrain"]
