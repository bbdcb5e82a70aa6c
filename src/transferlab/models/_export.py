"""``to_transformers``: a text fit or merge written as a plain Hugging Face folder (see ``_hf_text``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._io import atomic_dir, write_json_atomic
from .._version import __version__
from ..errors import TransferlabError

_PEFT = "base_model.model."


def to_transformers(model_dir: str | Path, out: str | Path, *, head: str | None = None) -> Path:
    """Write the text model saved in ``model_dir`` (a fit, or a merge's ``head``) into ``out`` as a Hugging Face
    folder: ``AutoTokenizer`` and ``AutoModelForSequenceClassification.from_pretrained(out)`` open a whole-network
    model (``config.json`` with ``id2label``; weights under transformers' names), and ``PeftModel.from_pretrained(
    AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=C), out)`` a LoRA fit, every adapter
    tensor by its name. The model's pooling is not transformers' (its pooler): ``out/README.md`` shows the three
    lines that pool as transferlab does; with them the predictions are transferlab's. Returns ``out``."""
    from ._card import read_card
    from ._hf_text import sequence_classification_names, transformers_config, write_hf_files
    from ._saved import load

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
    names = sequence_classification_names(inner.encoder)
    if names is None:
        raise TransferlabError(f"transformers has no sequence-classification model with one linear classifier for a "
                               f"{card.architecture.get('name')}: {d} opens in transferlab only")
    raw = dict(net.transferlab_config)  # the selected head's classes
    with atomic_dir(out) as tmp:
        net.transferlab_tokenizer.save_pretrained(str(tmp))
        if peft_format:
            base = _write_adapter(net, tmp, names[0], raw, d, Path(out))
        else:
            state = {_rename(k, names[0]): v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            _save(state, tmp / "model.safetensors")
            write_json_atomic(tmp / "config.json", transformers_config(raw, names))
            base = None
        write_hf_files(tmp, raw, exported={"names": names, "base": base})
    return Path(out)


def _rename(key: str, prefix: str) -> str:
    if key.startswith(_PEFT):
        return _PEFT + _rename(key[len(_PEFT):], prefix)
    if key.startswith("encoder."):
        return prefix + key[len("encoder"):]
    if key.startswith("head."):
        return "classifier" + key[len("head"):]
    return key


def _save(state: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(state, str(path), metadata={"format": "pt", "transferlab_version": __version__})


def _write_adapter(net: Any, tmp: Path, prefix: str, card: dict[str, Any], d: Path, out: Path) -> str | None:
    """peft's two files under transformers' names; the base as transformers opens it (returned)."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(net, save_embedding_layers=False)
    _save({_rename(k, prefix): v.detach().cpu().contiguous() for k, v in state.items()}, tmp / "adapter_model.safetensors")
    cfg = net.peft_config["default"]
    cfg.save_pretrained(str(tmp))
    from ._hf_text import _json

    raw = _json(tmp / "adapter_config.json")
    targets = raw.get("target_modules")
    if isinstance(targets, list):
        raw["target_modules"] = sorted(_rename(t, prefix) for t in targets)
    raw["modules_to_save"] = ["classifier" if m == "head" else m for m in raw.get("modules_to_save") or []]
    base = _base_path(card.get("model"), d, out)
    raw["base_model_name_or_path"] = base
    raw["auto_mapping"] = None
    write_json_atomic(tmp / "adapter_config.json", raw)
    return base


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
