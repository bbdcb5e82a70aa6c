"""``to_transformers``: a text model written as a plain Hugging Face folder (see ``_hf_text``), for the folders that are
not one themselves: written before text models used transformers' module names, a merge's other heads, a task of a
merge that keeps per-task tensors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._io import atomic_dir, write_json_atomic
from .._version import __version__
from ..errors import TransferlabError

_PEFT = "base_model.model."


def to_transformers(model_dir: str | Path, out: str | Path, *, head: str | None = None) -> Path:
    """Write the text model saved in ``model_dir`` (a fit, or a merge's ``head``) into ``out`` in the form a text
    fit's folder has itself (``_hf_text``): ``AutoTokenizer`` and ``AutoModelForSequenceClassification.from_pretrained(
    out, trust_remote_code=True)`` open a whole network with this model's logits (``config.json`` with
    ``id2label``, the weights under transformers' names, ``modeling_transferlab.py`` for the pooling); a LoRA fit is
    peft's adapter under those names, which ``PeftModel.from_pretrained`` loads over that class built on the base
    (``out/README.md`` shows how). Needed only for folders written before text models used transformers' names,
    for a merge's other heads, and for a task of a merge with per-task tensors. Returns ``out``."""
    from ._card import read_card
    from ._hf_text import write_hf_files
    from ._saved import load
    from ._text import transformers_names

    d = Path(model_dir)
    card = read_card(d)
    if card.architecture.get("library") != "transformers":
        raise TransferlabError(f"{d} is an image model: a timm network opens in plain timm (docs/models.md)")
    if card.structure or card.weights == "trained":
        raise TransferlabError(f"{d} was fitted with {card.method!r}, whose modules transformers' classes lack: it "
                               "opens in transferlab only")
    net = load(d, head=head)
    peft_format = card.weights == "peft"
    inner = net.base_model.model if peft_format else net
    names, old = transformers_names(inner.encoder), dict(inner.names)
    raw = dict(net.transferlab_config)  # the selected head's classes
    raw["architecture"] = {**raw["architecture"], "modules": names}
    if raw.get("merge"):  # the written network is this task's: no per-task tensors
        raw["merge"] = {k: v for k, v in raw["merge"].items() if k != "task_weights"}
    with atomic_dir(out) as tmp:
        net.transferlab_tokenizer.save_pretrained(str(tmp))
        if peft_format:
            _write_adapter(net, tmp, (old, names), raw, d, Path(out))
        else:
            _save({_rename(k, old, names): v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                  tmp / "model.safetensors")
        write_hf_files(tmp, raw, exported=True)
    return Path(out)


def legacy_text_state(model_dir: str | Path, *, trust_pickle: bool = False) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """For a text model folder written before text models used transformers' module names (its card's architecture
    has no ``modules``): its whole network's tensors under those names (a peft adapter folded into its base) and
    the architecture record that says so, so that it meets models saved now (a merge, a fit's ``init``). None for
    any other folder."""
    from ._card import read_card
    from ._saved import load
    from ._text import rename_modules_, transformers_names

    card = read_card(Path(model_dir))
    if card.architecture.get("library") != "transformers" or "modules" in card.architecture or card.structure:
        return None
    net = load(model_dir, trust_pickle=trust_pickle)
    if card.weights == "peft":
        net = net.merge_and_unload()
    rename_modules_(net, transformers_names(net.encoder))
    return {k: v.detach() for k, v in net.state_dict().items()}, dict(net.architecture)


def _rename(key: str, old: dict[str, str], new: dict[str, str]) -> str:
    """A tensor or module name of a text model under ``old`` module names, under ``new`` ones."""
    if key.startswith(_PEFT):
        return _PEFT + _rename(key[len(_PEFT):], old, new)
    for part in ("encoder", "head"):
        if key == old[part] or key.startswith(old[part] + "."):
            return new[part] + key[len(old[part]):]
    return key


def _save(state: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(state, str(path), metadata={"format": "pt", "transferlab_version": __version__})


def _write_adapter(net: Any, tmp: Path, names: tuple[dict[str, str], dict[str, str]], card: dict[str, Any],
                   d: Path, out: Path) -> None:
    """peft's two files under transformers' module names (``names``: the model's and those), the base recorded as
    transformers opens it (a hub id, or a local folder relative to ``out``)."""
    from peft.utils import get_peft_model_state_dict

    from ._hf_text import _json

    old, new = names
    state = get_peft_model_state_dict(net, save_embedding_layers=False)
    _save({_rename(k, old, new): v.detach().cpu().contiguous() for k, v in state.items()},
          tmp / "adapter_model.safetensors")
    net.peft_config["default"].save_pretrained(str(tmp))
    raw = _json(tmp / "adapter_config.json")
    targets = raw.get("target_modules")
    if isinstance(targets, list):
        raw["target_modules"] = sorted(_rename(t, old, new) for t in targets)
    raw["modules_to_save"] = [_rename(m, old, new) for m in raw.get("modules_to_save") or []]
    raw["base_model_name_or_path"] = _base_path(card.get("model"), d, out)
    raw["auto_mapping"] = None
    write_json_atomic(tmp / "adapter_config.json", raw)


def _base_path(ref: str | None, d: Path, out: Path) -> str | None:
    """The base as ``from_pretrained`` names it: a hub id, or a local folder relative to ``out``."""
    from ._build import resolve
    from ._paths import local_reference

    if not ref:
        return None
    full = local_reference(ref, d)
    try:
        where = getattr(resolve(full), "path_or_id", None)
    except TransferlabError:
        where = None
    where = where or full.partition(":")[2]
    if os.path.isdir(where):
        return Path(os.path.relpath(os.path.abspath(where), os.path.abspath(out))).as_posix()
    return where
