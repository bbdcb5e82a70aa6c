"""Zoos: YAML lists of model references with display names and metadata."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ModelError


class ZooModel(BaseModel):
    """One zoo entry (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str = Field(description="model reference, e.g. builtin:efficientnet_lite0 or timm:resnet18")
    name: str | None = Field(default=None, description="display name (default: the reference)")
    params: int | None = Field(default=None, description="number of parameters")
    source_dataset: str | None = Field(default=None, description="what the model was pretrained on")
    source_accuracy: float | None = Field(default=None, description="accuracy on its source task, in %")
    imagenet_accuracy: float | None = Field(default=None, description="ImageNet-1k top-1 accuracy in %, where known "
                                            "(bench rank's imagenet_accuracy prior)")

    @field_validator("ref")
    @classmethod
    def _has_scheme(cls, v: str) -> str:
        if ":" not in v:
            raise ValueError("a model reference needs a scheme, e.g. timm:resnet18 or builtin:efficientnet_lite0")
        return v

    @property
    def display_name(self) -> str:
        return self.name or self.ref


class Zoo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="zoo name")
    description: str = Field(default="", description="one line about the zoo")
    models: list[ZooModel] = Field(description="the candidate models", min_length=1)

    def refs(self) -> list[str]:
        return [m.ref for m in self.models]


def list_builtin_zoos() -> list[str]:
    root = resources.files("transferlab.zoo").joinpath("zoos")
    return sorted(f"builtin:{p.name[:-5]}" for p in root.iterdir() if p.name.endswith(".yaml"))


def load_zoo(ref: str | Path) -> Zoo:
    """``builtin:NAME``, a YAML file, or a comma-separated list of model references."""
    import yaml

    ref_s = str(ref)
    if ref_s.startswith("builtin:") and "," not in ref_s:
        name = ref_s.split(":", 1)[1]
        res = resources.files("transferlab.zoo").joinpath("zoos", f"{name}.yaml")
        if not res.is_file():
            from ._sources import BUILTIN_MODELS

            if name.replace("-", "_") in BUILTIN_MODELS:  # a single built-in model as a one-model zoo
                return Zoo(name=name, models=[ZooModel(ref=ref_s)])
            raise ModelError(f"unknown zoo {ref_s!r}; built-in zoos: {', '.join(list_builtin_zoos())} "
                             "(or give a YAML file or a comma-separated list of model references)")
        text, source = res.read_text(encoding="utf-8"), ref_s
    elif ref_s.endswith((".yaml", ".yml")):
        p = Path(ref_s).expanduser()
        if not p.is_file():
            raise ModelError(f"zoo file {ref_s!r} does not exist")
        text, source = p.read_text(encoding="utf-8"), str(p)
    else:
        refs = [r.strip() for r in ref_s.split(",") if r.strip()]
        if not refs or any(":" not in r for r in refs):
            raise ModelError(f"unknown zoo {ref_s!r}; built-in zoos: {', '.join(list_builtin_zoos())} "
                             "(or give a YAML file or a comma-separated list of model references)")
        return Zoo(name="custom", models=[ZooModel(ref=r) for r in refs])
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelError(f"zoo {source} is not valid YAML: {exc}") from None
    if isinstance(raw, list):
        raw = {"name": Path(source).stem, "models": raw}
    if not isinstance(raw, dict):
        raise ModelError(f"zoo {source} must be a mapping with 'models:' (or a list of entries)")
    raw.setdefault("name", Path(source).stem)
    models = raw.get("models")
    if models is not None and not isinstance(models, list):
        raise ModelError(f"zoo {source}: 'models:' must be a list of model references (one '- ref' per line), not "
                         f"a {type(models).__name__}")
    raw["models"] = [{"ref": m} if isinstance(m, str) else m for m in models or []]
    try:
        return Zoo.model_validate(raw)
    except ValidationError as exc:
        errs = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        more = f"; and {len(errs) - 3} more" if len(errs) > 3 else ""
        raise ModelError(f"zoo {source} is invalid: {'; '.join(errs[:3])}{more}") from None
