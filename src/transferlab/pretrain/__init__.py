"""Pretraining on source tasks: ``build_zoo`` (re)builds the small built-in zoo deterministically."""

from ._small import build_model, build_zoo

__all__ = ["build_model", "build_zoo"]
