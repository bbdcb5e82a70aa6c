"""A text model as a Hugging Face folder: a fit or merge directory is one itself.

A text model's modules carry transformers' names (``_text``: the encoder under its ``base_model_prefix``, the head
as ``classifier``), so its ``model.safetensors`` and its peft adapter are under the names transformers and peft use.
Beside them :func:`write_hf_files` puts ``config.json`` (the encoder's config with ``model_type``, ``id2label`` /
``label2id``, the pooling in ``transferlab``, and an ``auto_map``), ``modeling_transferlab.py`` (``_hf_modeling``:
the pooling transferlab trained with, which no transformers class has), the tokenizer at the top level and a
``README.md`` card (in place of peft's template). So, for a whole network (a fit, a merge with its first head):
``AutoTokenizer.from_pretrained(DIR)`` and ``AutoModelForSequenceClassification.from_pretrained(DIR,
trust_remote_code=True)``, whose ``logits`` are transferlab's; for a peft adapter: ``PeftModel.from_pretrained``
over that class built on the base (or over transformers' own class: every adapter tensor loads by its name).

Why custom code: transferlab pools the encoder's last hidden states (the mean over the tokens, or the first token:
the zoo's features), while transformers' classes classify their own pooler's output (BERT: ``tanh(dense(h[CLS]))``,
a layer transferlab drops; DistilBERT, RoBERTa, ELECTRA: a dense layer and an activation) and none averages over the
tokens, so no standard class and no setting of one gives this model's logits.

Folders written before the names were transformers' (cards without ``architecture.modules``) load in transferlab as
they are; :func:`~transferlab.models.to_transformers` writes them (or a merge's other heads) in this form.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._io import normal_permissions, write_json_atomic, write_text_atomic
from ._model_card import MODEL_CLASS, MODELING_FILE

#: files a tokenizer's ``save_pretrained`` writes that are copied to the top level (never the card or the weights)
_NOT_TOKENIZER = ("config.json", "README.md", "transferlab.json", "model.safetensors", "adapter_config.json",
                  "adapter_model.safetensors", MODELING_FILE)


def hf_form(card: dict[str, Any]) -> str | None:
    """How a saved model's folder opens in transformers: ``"model"`` (a text network's whole weights under
    transformers' names: a fit, or a merge with its first head), ``"adapter"`` (a peft adapter under those names,
    over its base), or None (an image model; modules transformers' classes lack; only the trained tensors;
    per-task tensors of a merge; a folder written before the names were transformers')."""
    arch = card.get("architecture") or {}
    if arch.get("library") != "transformers" or card.get("structure") or not isinstance(arch.get("modules"), dict):
        return None
    if card.get("weights") == "peft":
        return "adapter"
    if card.get("weights", "state_dict") == "state_dict" and not (card.get("merge") or {}).get("task_weights"):
        return "model"
    return None


def transformers_config(card: dict[str, Any]) -> dict[str, Any]:
    """transformers' ``config.json`` of a text model: the encoder's config (``model_type`` included),
    ``id2label``/``label2id``/``num_labels`` from the class names, ``architectures`` and ``auto_map`` naming
    :data:`MODEL_CLASS`, and ``transferlab`` (the pooling, the token limit)."""
    from transformers import AutoConfig

    from ._model_card import pooling_of

    arch = card.get("architecture") or {}
    conf = dict(arch.get("config") or {})
    model_type = conf.pop("model_type")
    n = int(card["num_classes"])
    names = [str(c) for c in (card.get("class_names") or [])] or [str(i) for i in range(n)]
    cfg = AutoConfig.for_model(model_type, **conf)
    cfg.id2label = dict(enumerate(names))
    cfg.label2id = {c: i for i, c in enumerate(names)}
    cfg.architectures = [MODEL_CLASS]
    cfg.problem_type = "single_label_classification"
    out = {k: v for k, v in cfg.to_dict().items() if k not in ("_name_or_path", "architecture", "auto_map")}
    out["num_labels"] = n
    out["auto_map"] = {"AutoModelForSequenceClassification": f"{MODELING_FILE[:-3]}.{MODEL_CLASS}"}
    out["transferlab"] = {**pooling_of(card), "max_length": card.get("max_length") or arch.get("max_length"),
                          "version": card.get("transferlab_version")}
    return out


def modeling_source(card: dict[str, Any]) -> str:
    """``modeling_transferlab.py`` for the card's encoder: ``_hf_modeling``'s source with its model type and the
    encoder's attribute name."""
    arch = card.get("architecture") or {}
    model_type = str((arch.get("config") or {}).get("model_type"))
    encoder = str(arch["modules"]["encoder"])
    if not (model_type.replace("-", "_").isidentifier() and encoder.isidentifier()):
        raise ValueError(f"not a model type and module name: {model_type!r}, {encoder!r}")
    src = (Path(__file__).with_name("_hf_modeling.py")).read_text()
    src = re.sub(r'^MODEL_TYPE = ".*"$', f"MODEL_TYPE = {model_type!r}", src, count=1, flags=re.M)
    return re.sub(r'^ENCODER = ".*"$', f"ENCODER = {encoder!r}", src, count=1, flags=re.M)


def write_hf_files(out: Path, card: dict[str, Any], *, exported: bool = False) -> None:
    """Into the model directory ``out``: a text model's tokenizer files at the top level (from ``out/tokenizer``),
    ``config.json`` and ``modeling_transferlab.py`` where the folder opens in transformers (:func:`hf_form`), and
    the ``README.md`` card of text models and peft adapters (it replaces peft's template). ``exported``: the folder
    is :func:`~transferlab.models.to_transformers`' (no transferlab card: the README shows transformers only)."""
    text = (card.get("architecture") or {}).get("library") == "transformers"
    tok = out / "tokenizer"
    if text and tok.is_dir():
        for f in sorted(tok.iterdir()):
            if f.is_file() and not f.is_symlink() and f.name not in _NOT_TOKENIZER:
                _copy_atomic(f, out / f.name)
    form = hf_form(card)
    if form is not None:
        write_json_atomic(out / "config.json", transformers_config(card))
        write_text_atomic(out / MODELING_FILE, modeling_source(card))
    if text or card.get("weights") == "peft":
        from ._model_card import model_card

        adapter = _json(out / "adapter_config.json") if card.get("weights") == "peft" else None
        write_text_atomic(out / "README.md", model_card(card, form=form, exported=exported, adapter=adapter))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _copy_atomic(src: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        normal_permissions(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
