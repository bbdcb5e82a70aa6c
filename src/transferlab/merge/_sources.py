"""Where the weights to merge come from, read one tensor at a time.

A source is a fit output directory (``model.safetensors`` + ``transferlab.json``, or a peft adapter directory), a
Hugging Face model folder (``config.json`` with a ``model_type``, ``model.safetensors``), a ``.safetensors`` file, an
in-memory state dict, a pickle checkpoint (only with ``trust_pickle``), or, for the base only, a model reference
(``builtin:``, ``timm:``, ``hf:``, ``st:``) built the way ``fit`` builds it.

Every source answers ``keys()``, ``info(key) -> (shape, dtype)``, ``get(key)`` (checked finite) and
``delta(key, base) -> tensor or None`` (its task vector for that tensor; ``None`` means zero). A LoRA adapter's task
vector is its full low-rank product ``scaling * B @ A`` per adapted layer, never A and B merged separately (peft
#3004: the cross terms of averaged factors are not the averaged product).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ..errors import TransferlabError
from ..zoo import weight_kind
from ._hf_folder import SHARD_INDEX, is_hf_folder, shard_files
from ._pickle import pickle_state
from ._stream import MappedFile

log = logging.getLogger(__name__)
_CODES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
          "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


class Source:
    label: str = "?"
    config: dict[str, Any] | None = None
    path: Path | None = None
    head_prefix: str | None = None
    reference: str | None = None  # the model reference it was opened from, as given
    hf: bool = False  # a Hugging Face model folder (transformers' config.json, no transferlab card)

    def keys(self) -> list[str]:
        raise NotImplementedError

    def info(self, key: str) -> tuple[tuple[int, ...], Any]:
        raise NotImplementedError

    def _read(self, key: str) -> Any:
        raise NotImplementedError

    def get(self, key: str) -> Any:
        t = self._read(key)
        checked = self.__dict__.setdefault("_checked", set())
        if key not in checked:  # each tensor once, however often it is read (the base is read once per pass)
            if t.is_floating_point() and not _finite(t):
                raise TransferlabError(f"{self.label}: tensor {key} holds NaN or inf values; a broken checkpoint "
                                       "cannot be merged")
            checked.add(key)
        return t

    def delta(self, key: str, base: Any) -> Any:
        t = self.get(key)
        return t.to(base.dtype) - base

    def rows(self, key: str, step: int) -> Any:
        """Every ``step``-th row (first dimension) of a tensor: a cheap sample (a file source reads only those
        rows). Not checked for NaN: samples only estimate, the full reads check."""
        t = self._read(key)
        return t.reshape(-1)[::step] if t.dim() <= 1 else t[::step]

    def stream(self, key: str) -> Any:
        """``key``'s tensor for one read straight through (the weighted-sum path): not checked for NaN (the caller
        checks what it computes, then :meth:`get` names the culprit) and never to be modified. A file source maps
        the file (no copy); :meth:`release` drops the pages again (a later read re-reads the file)."""
        return self._read(key)

    def release(self, key: str) -> None:
        """Done with the tensor :meth:`stream` gave for ``key``."""

    def is_head(self, key: str) -> bool:
        p = self.head_prefix
        return bool(p) and (key == p or key.startswith(p + "."))

    def head_keys(self) -> list[str]:
        return [k for k in self.keys() if self.is_head(k)]

    def close(self) -> None:
        pass


def _finite(t: Any) -> bool:
    """No NaN or inf in ``t``: one reduction (a sum is finite unless an entry is NaN/inf or the sum overflows; only
    then the exact, allocating check)."""
    import math

    import torch

    return math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all())


class DictSource(Source):
    def __init__(self, state: dict[str, Any], label: str, head_prefix: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
        import torch

        bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise TransferlabError(f"{label}: entry {bad[0]!r} is not a tensor; pass a state dict of tensors")
        self.state = {k: v.detach().cpu() for k, v in state.items()}
        self.label, self.head_prefix, self.config = label, head_prefix, config

    def keys(self) -> list[str]:
        return list(self.state)

    def info(self, key: str) -> tuple[tuple[int, ...], Any]:
        t = self.state[key]
        return tuple(t.shape), t.dtype

    def _read(self, key: str) -> Any:
        return self.state[key]


class SafetensorsSource(Source):
    """Lazy: tensors are read from the file when asked for, one at a time, with ``pread`` where safetensors offers it
    (>= 0.8): a tensor's memory is then the process's own and freed after use, where mapped file pages would stay
    resident until the file is closed (measured: 1.9 GB of mapped pages for five ViT-B files). ``path``: one file, or
    the shards of one model (``model-00001-of-00002.safetensors``, ...: each tensor read from the shard holding it)."""

    def __init__(self, path: Path | list[Path], label: str, config: dict[str, Any] | None = None) -> None:
        paths = path if isinstance(path, list) else [path]
        self._by_key: dict[str, Any] = {}
        self._file: dict[str, Path] = {}
        for f in paths:
            fh = _open_safetensors(f, label)
            self._by_key.update((k, fh) for k in fh.keys())
            self._file.update((k, f) for k in fh.keys())
        self.path, self.label, self.config = paths[0], label, config
        self._keys = list(self._by_key)
        self._info: dict[str, tuple[tuple[int, ...], Any]] = {}
        self._maps: dict[Path, Any] = {}

    def keys(self) -> list[str]:
        return self._keys

    def info(self, key: str) -> tuple[tuple[int, ...], Any]:
        import torch

        if key not in self._info:
            sl = self._by_key[key].get_slice(key)
            code = sl.get_dtype()
            if code not in _CODES:
                raise TransferlabError(f"{self.label}: tensor {key} is {code}, a dtype merging does not handle "
                                       f"({', '.join(_CODES)}); convert the checkpoint first")
            self._info[key] = (tuple(sl.get_shape()), getattr(torch, _CODES[code]))
        return self._info[key]

    def _read(self, key: str) -> Any:
        return self._by_key[key].get_tensor(key)

    def rows(self, key: str, step: int) -> Any:
        shape = self.info(key)[0]
        if len(shape) <= 1:
            return self._read(key).reshape(-1)[::step]
        return self._by_key[key].get_slice(key)[::step]

    def stream(self, key: str) -> Any:
        """A tensor over the file's mapped pages (no copy: read at the page cache's speed, 2.6x a ``pread`` copy on
        the mergekit benchmark's files); a copy where the format gives an unaligned offset."""
        import torch

        m = self._maps.get(self._file[key])
        if m is None:
            m = self._maps[self._file[key]] = MappedFile(self._file[key])
        begin, end = m.spans[key]
        shape, dtype = self.info(key)
        size = torch.empty((), dtype=dtype).element_size()
        if end == begin or begin % size:
            return self._read(key)
        return torch.frombuffer(m.map, dtype=dtype, count=(end - begin) // size, offset=begin).reshape(shape)

    def release(self, key: str) -> None:
        m = self._maps.get(self._file[key])
        if m is not None:
            m.drop(*m.spans[key])

    def close(self) -> None:
        self._by_key = {}
        self._maps = {}  # unmapped once no tensor refers to them


def _open_safetensors(path: Path, label: str) -> Any:
    from safetensors import safe_open

    try:
        try:
            return safe_open(str(path), framework="pt", backend="pread")
        except TypeError:  # safetensors < 0.8: memory-mapped
            return safe_open(str(path), framework="pt")
    except Exception as exc:  # a truncated or foreign file
        raise TransferlabError(f"{label}: cannot read {path} as safetensors ({exc})") from None


class LoraSource(Source):
    """A peft LoRA adapter directory over ``base``: task vector ``scaling * B @ A`` for each adapted weight, zero
    elsewhere; its trained head (peft ``modules_to_save``) is its own."""

    PREFIX = "base_model.model."

    def __init__(self, path: Path, base: Source, label: str, config: dict[str, Any]) -> None:
        self.path, self.base, self.label, self.config = path, base, label, config
        self.adapter = json.loads((path / "adapter_config.json").read_text())
        self.file = SafetensorsSource(path / "adapter_model.safetensors", label)
        self.file.label = label
        self.lora: dict[str, tuple[str, str, float]] = {}  # base weight key -> (A key, B key, scaling)
        self.own: dict[str, str] = {}  # head (modules_to_save) key -> file key
        for k in self.file.keys():
            name = k[len(self.PREFIX):] if k.startswith(self.PREFIX) else k
            if ".lora_A." in name:
                module = name.split(".lora_A.")[0]
                r = int(self.file.info(k)[0][0])
                self.lora[module + ".weight"] = (k, k.replace(".lora_A.", ".lora_B."), self._scaling(module, r))
            elif ".lora_B." in name or ".lora_embedding_" in name or ".lora_magnitude_vector" in name:
                if ".lora_B." not in name:
                    raise TransferlabError(f"{label}: adapter tensor {k} is not plain LoRA")
            else:
                self.own[name.replace(".modules_to_save.default", "")] = k
        self.head_prefix = None
        known = set(base.keys())
        lost = [k for k in self.lora if k not in known]
        if lost:
            raise TransferlabError(f"{label}: the adapter updates {lost[0]}, which the base has no tensor for; merge "
                                   "adapters over the model they were trained on")

    def _scaling(self, module: str, r: int) -> float:
        """peft's scaling for ``module``: ``alpha / r`` (rsLoRA: ``alpha / sqrt(r)``); ``alpha_pattern`` keys match
        as peft matches them (``re.match(rf"(.*\\.)?({key})$", module)``, first match wins); ``r`` is the adapter's
        own rank (A's first dimension), whatever ``rank_pattern`` said."""
        import re

        a = self.adapter
        alpha = a.get("lora_alpha", 8)
        for key, value in (a.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?({key})$", module):
                alpha = value
                break
        return alpha / math.sqrt(r) if a.get("use_rslora") else alpha / r

    def close(self) -> None:
        self.file.close()

    def keys(self) -> list[str]:
        own = set(self.own)
        return [k for k in self.base.keys() if k not in own and not self.base.is_head(k)] + list(self.own)

    def info(self, key: str) -> tuple[tuple[int, ...], Any]:
        return self.file.info(self.own[key]) if key in self.own else self.base.info(key)

    def _read(self, key: str) -> Any:
        if key in self.own:
            return self.file.get(self.own[key])
        raise KeyError(key)  # backbone tensors are base + delta; the engine asks for deltas

    def delta(self, key: str, base: Any) -> Any:
        if key in self.own:
            return self.get(key).to(base.dtype) - base
        if key not in self.lora:
            return None
        import torch

        ka, kb, s = self.lora[key]
        a, b = self.file.get(ka).to(torch.float64), self.file.get(kb).to(torch.float64)
        conv = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d, 5: torch.nn.functional.conv3d}
        try:
            if a.dim() == 2:
                d = b @ a
                if self.adapter.get("fan_in_fan_out"):
                    d = d.T
            elif a.dim() in conv and all(k == 1 for k in a.shape[2:]):  # 1x1 convolution
                d = (b.flatten(1) @ a.flatten(1)).reshape(b.shape[0], a.shape[1], *a.shape[2:])
            elif a.dim() in conv:  # k x k convolution: A (r, in, k...) then B (out, r, 1...)
                dims = list(range(a.dim()))
                perm = [1, 0, *dims[2:]]
                d = conv[a.dim()](a.permute(*perm), b).permute(*perm)
            else:
                raise ValueError(f"{a.dim()}-d LoRA factors")
        except (RuntimeError, ValueError) as exc:
            raise TransferlabError(f"{self.label}: cannot form the LoRA update of {key} ({exc})") from None
        d = d * s
        if tuple(d.shape) != tuple(base.shape):
            raise TransferlabError(f"{self.label}: the LoRA update of {key} has shape {tuple(d.shape)} but the base "
                                   f"tensor is {tuple(base.shape)}: the adapter was trained on another model")
        return d.to(base.dtype)


def _read_config(d: Path, base: Source | None = None) -> dict[str, Any] | None:
    """A fit directory's card (``transferlab.json``, or ``config.json`` of an older transferlab), its model reference
    as this machine opens it; else a Hugging Face folder's own ``config.json`` (timm's string ``architecture``
    dropped: it is not a transferlab architecture record); else None."""
    from ..models import card_file, local_reference

    p = card_file(d) or d / "config.json"
    if not p.is_file():
        return None
    try:
        cfg = json.loads(p.read_text())
    except ValueError:
        raise TransferlabError(f"{p} is not valid JSON") from None
    if not isinstance(cfg, dict):
        return None
    if not isinstance(cfg.get("architecture"), dict):
        cfg.pop("architecture", None)
        return cfg
    if cfg.get("model"):  # recorded relative to the fit directory; named as the merge's base when it is that model
        here = local_reference(str(cfg["model"]), d)
        given = base.reference if base is not None else None
        cfg["model"] = given if given and local_reference(given, ".") == here else here
    return cfg


def open_source(obj: Any, label: str, *, base: Source | None = None, trust_pickle: bool = False,
                allow_reference: bool = False) -> Source:
    """A :class:`Source` for a state dict, a file, a fit directory or (``allow_reference``) a model reference."""
    from ..models import card_file, head_prefix, legacy_text_state, load, read_card

    if isinstance(obj, dict):
        return DictSource(obj, label)
    p = Path(obj)
    if p.is_dir():
        cfg = _read_config(p, base)
        card = read_card(p) if card_file(p) is not None else None
        if card is not None and card.structure:
            kind = card.structure.get("kind", "?")
            raise TransferlabError(
                f"{label}: {p} has the model structure {kind!r} (fitted with {card.method!r}), which the base "
                "architecture lacks; "
                "merge needs models of the base architecture (finetune, partial, bitfit, head, sparse, lora, "
                "dora, ia3 fits without a structure: on sentence pairs, --pair-encoder cross)")
        legacy = legacy_text_state(p, trust_pickle=trust_pickle) if card is not None and not (
            base is None and card.weights == "peft") else None
        if legacy is not None:  # a text fit saved before transformers' module names: read under them, as fits are now
            cfg = {**(cfg or {}), "architecture": legacy[1]}
            src = DictSource(legacy[0], label, config=cfg)
        elif (p / "adapter_config.json").is_file():
            if base is None:
                raise TransferlabError(f"{label}: {p} is an adapter; it cannot be the base model")
            adapter = json.loads((p / "adapter_config.json").read_text())
            src: Source
            plain = (adapter.get("peft_type") == "LORA" and not adapter.get("use_dora")
                     and adapter.get("bias", "none") == "none" and not adapter.get("lora_bias"))
            if plain:
                src = LoraSource(p, base, label, cfg or {})
            else:  # DoRA, IA3, ...: fold the adapter into the weights the exact peft way, then diff
                net = load(p, trust_pickle=trust_pickle).merge_and_unload()
                src = DictSource({k: v.detach() for k, v in net.state_dict().items()}, label, config=cfg)
            src.path = p
        elif card is not None and card.weights == "trained":  # the trained tensors only: rebuilt over its base
            net = load(p, trust_pickle=trust_pickle)
            src = DictSource({k: v.detach() for k, v in net.state_dict().items()}, label, config=cfg)
        elif (p / "model.safetensors").is_file():
            src = SafetensorsSource(p / "model.safetensors", label, cfg)
        elif (p / SHARD_INDEX).is_file():  # a Hugging Face folder saved in shards
            src = SafetensorsSource(shard_files(p, label), label, cfg)
        else:
            found = sorted(f.name for f in p.iterdir() if f.is_file() and weight_kind(f) == "pickle")
            if found:
                src = DictSource(pickle_state(p / found[0], label, trust_pickle), label, config=cfg)
            else:
                raise TransferlabError(f"{label}: {p} holds no model.safetensors (nor an adapter): not a model "
                                       "directory")
        src.path = p
        src.hf = card is None and is_hf_folder(p)
        if cfg and cfg.get("architecture"):
            src.head_prefix = head_prefix(cfg)
        return src
    if p.is_file():
        kind = weight_kind(p)  # by content, not by name: a renamed pickle is still a pickle
        if kind == "safetensors":
            return SafetensorsSource(p, label)
        if kind == "pickle":
            return DictSource(pickle_state(p, label, trust_pickle), label)
        raise TransferlabError(f"{label}: {p} is neither a safetensors file nor a checkpoint")
    s = str(obj)
    if allow_reference and ":" in s and not s.startswith(("/", ".")):
        from ..models import pretrained

        net = pretrained(s, trust_pickle=trust_pickle)
        src = DictSource({k: v.detach() for k, v in net.state_dict().items()}, label,
                         head_prefix=head_prefix_of(net))
        src.reference = s
        return src
    raise TransferlabError(f"{label}: {s} does not exist (expected a fit output directory, a .safetensors file"
                           f"{' or a model reference like builtin:efficientnet_lite0' if allow_reference else ''})")


def head_prefix_of(net: Any) -> str | None:
    from ..models import head_prefix

    try:
        return head_prefix(net)
    except TransferlabError:
        return None
