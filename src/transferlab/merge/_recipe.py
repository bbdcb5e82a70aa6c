"""Merge recipes: ``merge.yaml`` (method, base, models with per-model options, options, output), written next to
every :func:`~transferlab.merge.merge_models` output and read by ``transferlab merge --config``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .._version import __version__
from ..errors import TransferlabError
from ._registry import MERGE_METHODS
from ._settings import MergeSettings

log = logging.getLogger(__name__)
#: the recipe written next to every merge (``transferlab merge --config OUT/merge.yaml --out OTHER`` repeats it)
RECIPE_FILE = "merge.yaml"
#: how a recipe records an input that was a Python object (a state dict, a Dataset), not a path or reference
IN_MEMORY = "<in memory"


class RecipeModel(BaseModel):
    """One fine-tuned model of a merge recipe (a bare string is its ``path``)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a fit directory, Hugging Face folder or .safetensors file (relative: to the file)")
    name: str | None = Field(None, description="its task (head) name; default: the directory's name")
    data: str | None = Field(None, description="its dataset (fisher, regmean, atlas, reset_norms)")
    weight: float | None = Field(None, description="its weight, for a method with a per-model 'weights' option")


class MergeRecipe(BaseModel):
    """A merge as data: ``transferlab merge --config merge.yaml`` (YAML; unknown keys are errors). Every
    :func:`merge_models` output holds the recipe that made it (:data:`RECIPE_FILE`: the method's defaults filled in,
    local paths relative to it, no ``out``)."""

    model_config = ConfigDict(extra="forbid")

    method: str | None = Field(None, description="the merge method (transferlab merge --list)")
    base: str | None = Field(None, description="the model the fine-tuned models started from: a reference or a path")
    models: list[RecipeModel] = Field(default_factory=list, description="the fine-tuned models, in order")
    options: dict[str, Any] = Field(default_factory=dict, description="the method's options")
    out: str | None = Field(None, description="the output directory (relative: to the file)")
    head_prefix: str | None = Field(None, description="the task heads' name, for raw checkpoints")
    reset_norms: bool = Field(False, description="re-estimate batch-norm statistics on the models' data")
    reset_examples: int = Field(256, ge=1, description="examples per task for reset_norms")
    transferlab_version: str | None = Field(None, description="the transferlab that wrote it (informational)")
    _source: str | None = PrivateAttr(None)  # the file it was read from, for messages
    _notes: list[str] = PrivateAttr(default_factory=list)  # a mergekit file: what each of its keys became

    @property
    def notes(self) -> list[str]:
        """How a mergekit file was translated: one line per mapping (empty for transferlab's own recipes)."""
        return list(self._notes)

    @field_validator("models", mode="before")
    @classmethod
    def _paths_as_entries(cls, v: Any) -> Any:
        return [{"path": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    def merge_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~transferlab.merge.merge_models` for this recipe (``run_recipe`` runs
        it); the recipe file (if any) was checked when it was read, the values are checked here."""
        import inspect

        def hint(key: str) -> str:
            return f" (or {key}: in {self._source})" if self._source else ""

        if self.method is None:
            raise TransferlabError(f"--method is required: one of {', '.join(MERGE_METHODS.list())}{hint('method')}")
        if self.out is None:
            raise TransferlabError(f"--out is required: the directory to write the merged model to{hint('out')}")
        lost = [v for v in (self.base, *(m.path for m in self.models), *(m.data for m in self.models))
                if v and v.startswith(IN_MEMORY)]
        if lost:
            raise TransferlabError(f"{self._source or 'the recipe'}: the merge that wrote it had in-memory inputs "
                                   f"({', '.join(lost)}): give them as paths or references (--base, --models, --data)")
        opts = dict(self.options)
        if any(m.weight is not None for m in self.models):
            if "weights" not in inspect.signature(MERGE_METHODS.get(self.method)).parameters:
                raise TransferlabError(f"models: weight: {self.method} has no per-model weights (no 'weights' "
                                       "option): remove the weights, or scale every task vector with its options")
            opts["weights"] = [1.0 if m.weight is None else m.weight for m in self.models]
        data = [m.data for m in self.models]
        if any(d is not None for d in data) and None in data:
            raise TransferlabError("data: give a dataset for every model or for none (one per model, same order)")
        names = [m.name or Path(m.path).name for m in self.models] if any(m.name for m in self.models) else None
        return {"method": self.method, "base": self.base, "models": [m.path for m in self.models], "out": self.out,
                "data": data if data and None not in data else None, "names": names, "head_prefix": self.head_prefix,
                "reset_norms": self.reset_norms, "reset_examples": self.reset_examples, **opts}


def load_recipe(path: str | Path) -> MergeRecipe:
    """A merge recipe file, validated (unknown keys are errors); its relative paths are read relative to the file. A
    mergekit configuration (it has ``merge_method``) is translated first: :attr:`MergeRecipe.notes` says how, and
    what has no equivalent is refused by its key."""
    import yaml

    from ..models import local_reference
    from ._mergekit import from_mergekit, is_mergekit

    p = Path(path).expanduser()
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TransferlabError(f"cannot read the merge recipe {p}: {exc}") from None
    if not isinstance(raw, dict):
        raise TransferlabError(f"{p}: a merge recipe is a mapping (method, base, models, options, out)")
    notes: list[str] = []
    if is_mergekit(raw):
        try:
            raw, notes = from_mergekit(raw, p.parent)
        except TransferlabError as exc:
            raise TransferlabError(f"{p} (a mergekit configuration): {exc}") from None
        for line in notes:
            log.info("mergekit %s", line)
    try:
        r = MergeRecipe.model_validate(raw)
    except ValidationError as exc:
        errs = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"])
            known = RecipeModel.model_fields if e["loc"][0] == "models" else MergeRecipe.model_fields
            errs.append(f"unknown key {loc} (known: {', '.join(known)})" if e["type"] == "extra_forbidden"
                        else f"{loc}: {e['msg']}")
        more = f"; and {len(errs) - 3} more" if len(errs) > 3 else ""
        raise TransferlabError(f"{p} is not a valid merge recipe: {'; '.join(errs[:3])}{more}") from None

    def local(ref: str | None) -> str | None:
        return ref if ref is None or ref.startswith(IN_MEMORY) else local_reference(ref, p.parent)

    r = r.model_copy(update={
        "base": local(r.base), "out": str(p.parent / Path(r.out).expanduser()) if r.out else None,
        "models": [m.model_copy(update={"path": local(m.path), "data": local(m.data)}) for m in r.models]})
    r._source, r._notes = str(p), notes
    return r


def resolve_recipe(config: str | Path | None = None, *, method: str | None = None, base: Any = None,
                   models: Sequence[Any] | None = None, names: Sequence[str] | None = None,
                   data: Sequence[Any] | None = None, out: str | Path | None = None,
                   options: dict[str, Any] | None = None, head_prefix: str | None = None,
                   reset_norms: bool = False) -> MergeRecipe:
    """The merge ``transferlab merge`` runs: the recipe file ``config`` (if any) with the values given here over its
    own. ``method``, ``base``, ``out`` and ``head_prefix`` replace the file's; ``models`` replaces its list (with their
    names, data and weights); ``names`` and ``data`` go to the models by position; ``options`` are added to the
    file's key by key (the file's are dropped when ``method`` names another method); ``reset_norms=True`` turns it
    on. Without ``config``: the values given, as ``merge_models`` takes them."""
    r = load_recipe(config) if config is not None else MergeRecipe()
    file_options = r.options
    if method is not None and r.method is not None and method != r.method:
        if r.options:
            log.warning("--method %s replaces the recipe's %s: its options (%s) are not used", method, r.method,
                        ", ".join(r.options))
        file_options = {}
    entries = [RecipeModel(path=str(m)) for m in models] if models else list(r.models)
    for key, values in (("name", names), ("data", data)):
        if values:
            if len(values) != len(entries):
                what = "names" if key == "name" else "datasets"
                raise TransferlabError(f"{len(values)} {what} for {len(entries)} models: give one per model, in the "
                                       "same order")
            entries = [e.model_copy(update={key: str(v)}) for e, v in zip(entries, values, strict=True)]
    new = r.model_copy(update={
        "method": method or r.method, "base": str(base) if base is not None else r.base, "models": entries,
        "options": {**file_options, **(options or {})}, "out": str(out) if out is not None else r.out,
        "head_prefix": head_prefix or r.head_prefix, "reset_norms": reset_norms or r.reset_norms})
    new._source, new._notes = r._source, r._notes
    return new


def recipe_text(s: MergeSettings, names: list[str], head_prefix: str | None) -> str:
    """The text of a merge's :data:`RECIPE_FILE`: its resolved values (the method's defaults filled in; ``names``:
    the task names, ``head_prefix``: the head found), local paths relative to the output; in-memory inputs named as
    such (that recipe cannot repeat the merge)."""
    import inspect

    import yaml

    from ..models import portable, recorded_reference

    method, base, models, data, options, out = s.method, s.base, s.models, s.data, s.options, s.out

    def rec(x: Any, what: str = "state dict") -> str:
        return recorded_reference(x, out) if isinstance(x, (str, Path)) else f"{IN_MEMORY}: {what}>"

    params = inspect.signature(MERGE_METHODS.get(method)).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    given = list(data) if data is not None and len(data) == len(models) else None
    entries = [{"path": rec(m), "name": n,
                **({"data": rec(given[i], f"dataset {getattr(given[i], 'name', i + 1)}")} if given else {})}
               for i, (m, n) in enumerate(zip(models, names, strict=True))]
    doc = {"transferlab_version": __version__, "method": method, "base": rec(base), "models": entries,
           "options": _plain(portable({**defaults, **options}, out)), "head_prefix": head_prefix,
           "reset_norms": bool(s.reset_norms), "reset_examples": int(s.reset_examples)}
    return ("# transferlab merge recipe: `transferlab merge --config merge.yaml --out OTHER` repeats this merge\n"
            "# (local paths relative to this file; the method's defaults filled in)\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _plain(v: Any) -> Any:
    """``v`` as YAML's safe types (NumPy scalars as Python numbers; anything else unknown as its text)."""
    import numbers

    if type(v).__module__ == "numpy" and hasattr(v, "item"):  # NumPy scalars, np.bool_ included
        v = v.item()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return str(v)
