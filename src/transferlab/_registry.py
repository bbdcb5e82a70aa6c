"""One generic registry; each capability owns one instance (``METRICS``, ``MODEL_SOURCES``, ...)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import RegistryError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object, with metadata (paper, reference implementation, flags).

    ``register(name, **meta)`` is a decorator; names are lower_snake and unique.
    """

    def __init__(self, kind: str, modules: tuple[str, ...] | Callable[[], Iterable[str]] = ()) -> None:
        """``modules``: the modules whose import registers the entries (or a function that lists them, e.g. by
        discovering the files of a package); imported on first look-up, not before, so ``import transferlab`` stays
        light."""
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._modules = modules
        self._loaded = not modules

    def _load(self) -> None:
        if not self._loaded:
            import importlib

            self._loaded = True
            for m in (self._modules() if callable(self._modules) else self._modules):
                importlib.import_module(m)

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        if not _NAME.match(name):
            raise RegistryError(f"{self.kind} name {name!r} must be lower_snake_case")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj

        return decorator

    def entry(self, name: str) -> Entry[T]:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def meta(self, name: str) -> dict[str, Any]:
        return dict(self.entry(name).meta)

    def list(self, pattern: str | None = None) -> list[str]:
        self._load()
        names = sorted(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n, pattern)]
        return names

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


def discover(package_file: str, package: str, exclude: Iterable[str] = ()) -> Callable[[], list[str]]:
    """The modules of a package that register entries: every ``*.py`` beside ``package_file`` except ``__init__``
    and ``exclude`` (infrastructure). For ``Registry(modules=discover(__file__, __package__, {...}))``: a new entry is
    one file plus one decorator."""
    from pathlib import Path

    here, skip = Path(package_file).parent, {"__init__", *exclude}

    def modules() -> list[str]:
        return sorted(f"{package}.{p.stem}" for p in here.glob("*.py") if p.stem not in skip)

    return modules


def check_options(owner: str, fn: Callable[..., Any], options: dict[str, Any], skip: int = 0,
                  caller: tuple[str, Callable[..., Any]] | None = None) -> dict[str, Any]:
    """``options`` checked against ``fn``'s keyword parameters (after the first ``skip`` positional ones), before
    any work: an unknown name, or a value of the wrong type, is a :class:`TransferlabError` that names the option,
    the value and what was expected. Returns the options with values converted as the annotations say (``"4"`` for
    an ``int`` -> ``4``); unannotated or ``Any`` parameters take their values as given."""
    import inspect
    import typing

    from pydantic import TypeAdapter, ValidationError

    from .errors import TransferlabError

    params = list(inspect.signature(fn).parameters.values())[skip:]
    named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001  (an annotation that cannot be evaluated: check names only)
        hints = {}
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in named:
            if takes_any:
                out[key] = value
                continue
            known = ", ".join(f"{n}={p.default!r}" for n, p in named.items()) or "none"
            raise TransferlabError(f"{owner}: no option {key!r}{_did_you_mean(key, named, caller)}; its options "
                                   f"(with defaults): {known}")
        hint = hints.get(key, Any)
        if hint is Any:
            out[key] = value
            continue
        try:
            out[key] = TypeAdapter(hint).validate_python(value)
        except ValidationError as exc:
            expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            why = exc.errors()[0].get("msg", "") if exc.errors() else ""
            raise TransferlabError(f"{owner}: option {key}={value!r} is not a valid {expected} ({why})") from None
    return out


def _did_you_mean(key: str, named: dict[str, Any], caller: tuple[str, Callable[..., Any]] | None) -> str:
    """`` (did you mean 'epochs', an argument of fit?)``: the closest option of the method, or argument of the
    function that passed the options on (a typo in ``fit(..., epoch=1)`` is not the method's business)."""
    import difflib
    import inspect

    own = difflib.get_close_matches(key, list(named), n=1, cutoff=0.75)
    if own:
        return f" (did you mean {own[0]!r}?)"
    if caller is not None:
        name, fn = caller
        args = [p for p in inspect.signature(fn).parameters if p not in ("options", "kwargs")]
        near = difflib.get_close_matches(key, args, n=1, cutoff=0.75)
        if near:
            return f" (did you mean {near[0]!r}, an argument of {name}?)"
    return ""
