"""Local paths in saved configs: written relative to the output directory, read back relative to it.

The rule (one for every file a fit or merge writes: ``transferlab.json``, ``metrics.json``, ``merge.json``,
``adapter_config.json``): a local path is recorded relative to the output directory (``../weights/r18.safetensors``,
``/`` separators), never as an absolute path of the machine that wrote it. In a model reference only the path part
changes (``timm:resnet18@../weights/r18.safetensors``, ``hf:../my-bert``); hub ids and built-in names stay as given.
A directory moved together with its inputs still loads; one moved alone names its base in the error, and
``load(dir, base=...)`` says where it is now.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: schemes whose whole rest is a local path (``onnx:PATH?query``) or may be one (``hf:``/``st:``: a path or a hub id)
_PATH_SCHEMES = ("onnx",)
_PATH_OR_HUB_SCHEMES = ("hf", "st")


def _is_absolute(s: str) -> bool:
    return os.path.isabs(s) or s.startswith("~")


def _looks_local(s: str) -> bool:
    """``hf:``/``st:`` rest: a local path when it exists here or is spelled like one (``/``, ``.``, ``~``)."""
    return _is_absolute(s) or s.startswith(".") or os.path.exists(os.path.expanduser(s))


def _split(ref: str) -> tuple[str, str, str] | None:
    """(prefix, local path, suffix) of a reference or bare path, or None when it names nothing local."""
    scheme, sep, rest = ref.partition(":")
    if not sep or _is_absolute(ref) or len(scheme) < 2:  # a bare path (``C:\\`` is a drive, not a scheme)
        return "", ref, ""
    if scheme == "timm":
        name, at, local = rest.partition("@")
        return (f"timm:{name}@", local, "") if at and local else None
    if scheme in _PATH_SCHEMES:
        path, q, query = rest.partition("?")
        return f"{scheme}:", path, q + query
    if scheme in _PATH_OR_HUB_SCHEMES and _looks_local(rest):
        return f"{scheme}:", rest, ""
    return None


def recorded_path(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> str:
    """``path`` as a saved config records it: relative to ``out_dir`` (``./`` or ``../`` first, ``/`` separators);
    only its final name where no relative path exists (another drive)."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        rel = os.path.relpath(p, os.path.abspath(os.fspath(out_dir)))
    except ValueError:
        return Path(p).name
    rel = rel.replace(os.sep, "/")
    return rel if rel.startswith("../") or rel == ".." else f"./{rel}"


def _query(query: str, out_dir: str | os.PathLike[str]) -> str:
    """``?tokenizer=FILE&...``: absolute file values recorded like paths."""
    if not query:
        return query
    parts = []
    for kv in query[1:].split("&"):
        k, eq, v = kv.partition("=")
        parts.append(f"{k}={recorded_path(v, out_dir)}" if eq and _is_absolute(v) else kv)
    return "?" + "&".join(parts)


def recorded_reference(ref: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> str:
    """A model reference (or a bare path) as a saved config records it: its local path part relative to
    ``out_dir``; references without one (``builtin:``, hub ids) unchanged."""
    ref = os.fspath(ref)
    parts = _split(ref)
    if parts is None:
        return ref
    prefix, path, suffix = parts
    return prefix + recorded_path(path, out_dir) + _query(suffix, out_dir)


def portable(value: Any, out_dir: str | os.PathLike[str]) -> Any:
    """``value`` (options: strings, lists, dicts) with every string that names a local path recorded relative to
    ``out_dir``: absolute paths, and existing files or directories spelled as paths (``runs/a``, ``./a``).
    Other strings (module names, hub ids) are kept."""
    if isinstance(value, dict):
        return {k: portable(v, out_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, out_dir) for v in value]
    if isinstance(value, os.PathLike):
        return recorded_path(value, out_dir)
    if isinstance(value, str):
        if _is_absolute(value) or ((os.sep in value or "/" in value) and os.path.exists(value)):
            return recorded_path(value, out_dir)
        parts = _split(value)
        if parts is not None and parts[0] and _is_absolute(parts[1]):  # a reference with an absolute local part
            return recorded_reference(value, out_dir)
    return value


def local_reference(ref: str, model_dir: str | os.PathLike[str]) -> str:
    """A recorded reference as this machine opens it: a relative local part is read relative to ``model_dir``
    (older cards recorded paths as given: those that exist relative to the working directory are kept)."""
    parts = _split(ref)
    if parts is None:
        return ref
    prefix, path, suffix = parts
    if not path or _is_absolute(path):
        return ref
    root = os.path.abspath(os.fspath(model_dir))
    here = os.path.normpath(os.path.join(root, path))
    if not os.path.exists(here) and os.path.exists(path):
        return ref
    if suffix:  # ?tokenizer=./FILE
        kvs = [kv.partition("=") for kv in suffix[1:].split("&")]
        suffix = "?" + "&".join(k + eq + (os.path.normpath(os.path.join(root, v)) if eq and v.startswith(".") else v)
                                for k, eq, v in kvs)
    return prefix + here + suffix


def with_base(ref: str | None, base: str | os.PathLike[str]) -> str:
    """The reference to build a saved model's base from when the caller names it: a model reference as given, or a
    local path that replaces the recorded reference's path part (``timm:resnet18@NEW_PATH``)."""
    b = os.fspath(base)
    scheme = b.partition(":")[0]
    if os.path.exists(os.path.expanduser(b)) or ":" not in b or len(scheme) < 2:
        parts = _split(ref) if ref else None
        if parts is not None and parts[0]:
            return parts[0] + b + parts[2]
    return b


def peft_base_name(ref: str | None) -> str | None:
    """What ``adapter_config.json`` records as ``base_model_name_or_path``: the Hugging Face Hub id of a hub model
    (``timm:resnet18.a1_in1k`` -> ``timm/resnet18.a1_in1k``; ``hf:``/``st:`` ids as given, their local folders as
    the path, relative to the adapter's directory), else the recorded reference (``builtin:...``, ``timm:NAME@PATH``)."""
    if not ref:
        return ref
    scheme, _, rest = ref.partition(":")
    if _split(ref) is None and scheme == "timm":
        try:
            import timm

            cfg = timm.get_pretrained_cfg(rest)
            hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        except Exception:  # an unknown tag: keep the reference
            hub = None
        return hub or ref
    if scheme in _PATH_OR_HUB_SCHEMES:  # a hub id, or a local folder (relative to the adapter's): as peft opens it
        return rest
    return ref
