"""A text model as a Hugging Face folder: the ``README.md`` card of every text model and peft adapter (in place of
peft's template), the tokenizer at the top level, and :func:`to_transformers`, which writes a fit or merge as a folder
``AutoModelForSequenceClassification`` (and, for a LoRA fit, ``PeftModel`` over it) loads by itself.

Why an export and not the fit directory itself: a :class:`~transferlab.models.TextClassifier` names its modules
``encoder`` and ``head`` where transformers' class has ``bert`` and ``classifier``, and merges read a fit's
``model.safetensors`` and adapter tensors by those names (over a base built the way fit builds it). One file cannot
carry both names, so the fit keeps transferlab's and the export writes transformers'.

The pooling cannot move with the weights: transferlab pools the encoder's last hidden states (the mean over the
tokens, or the first token: the zoo's features), while transformers' class feeds its own pooler (BERT:
``tanh(dense(h[CLS]))``, a layer transferlab drops) to the classifier, and no setting of that class pools otherwise.
``model(**inputs).logits`` is therefore *not* the model's prediction; the card (and ``config.json``'s
``transferlab`` entry) says how to pool: three lines over ``model.bert``'s output, then ``model.classifier``.
Tested: the same classes as ``transferlab.models.predict``, logits equal to float rounding.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._io import normal_permissions, write_text_atomic

#: files a tokenizer's ``save_pretrained`` writes that are copied to the top level (never the card or the weights)
_NOT_TOKENIZER = ("config.json", "README.md", "transferlab.json", "model.safetensors", "adapter_config.json",
                  "adapter_model.safetensors")


def sequence_classification_names(encoder: Any) -> tuple[str, str, str] | None:
    """(the base model's attribute, ``"classifier"``, the class name) of transformers' sequence-classification
    model for ``encoder``'s config, where its classifier is one ``Linear`` over the hidden size and its base model
    is ``encoder``'s class (BERT, DistilBERT, ALBERT, DeBERTa...); None otherwise (RoBERTa's two-layer head...)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    try:
        cfg = type(encoder.config).from_dict({**encoder.config.to_dict(), "num_labels": 2})
        with torch.device("meta"):  # no memory, no weights: only the module names
            model = AutoModelForSequenceClassification.from_config(cfg)
    except Exception:  # no sequence-classification class for this model type (or it cannot be built)
        return None
    prefix = getattr(model, "base_model_prefix", "")
    head = getattr(model, "classifier", None)
    base = getattr(model, prefix, None) if prefix else None
    if (type(base) is not type(encoder) or not isinstance(head, torch.nn.Linear)
            or head.in_features != int(encoder.config.hidden_size) or prefix in ("drop", "classifier")):
        return None
    return prefix, "classifier", type(model).__name__


def transformers_config(card: dict[str, Any], names: tuple[str, str, str]) -> dict[str, Any]:
    """transformers' ``config.json`` for the exported text model: the encoder's config, ``architectures``,
    ``id2label``/``label2id``/``num_labels`` from the class names, and ``transferlab`` (the pooling to apply)."""
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
    cfg.architectures = [names[2]]
    cfg.problem_type = "single_label_classification"
    out = {k: v for k, v in cfg.to_dict().items() if k not in ("_name_or_path", "architecture")}
    out["num_labels"] = n
    out["transferlab"] = {**pooling_of(card), "max_length": card.get("max_length"),
                          "note": "predict with model.classifier(pool(model." + names[0]
                                  + "(...).last_hidden_state)), see README.md; model(...).logits uses a pooler "
                                  "this model does not have"}
    return out


def write_hf_files(out: Path, card: dict[str, Any], *, exported: dict[str, Any] | None = None) -> None:
    """Into the model directory ``out``: a text model's tokenizer files at the top level (from ``out/tokenizer``)
    and the ``README.md`` card of text models and peft adapters (it replaces peft's template). ``exported``: what
    :func:`to_transformers` wrote (the card then shows how transformers and peft open it)."""
    text = (card.get("architecture") or {}).get("library") == "transformers"
    tok = out / "tokenizer"
    if text and tok.is_dir():
        for f in sorted(tok.iterdir()):
            if f.is_file() and not f.is_symlink() and f.name not in _NOT_TOKENIZER:
                _copy_atomic(f, out / f.name)
    if text or card.get("weights") == "peft":
        from ._model_card import model_card

        adapter = _json(out / "adapter_config.json") if card.get("weights") == "peft" else None
        write_text_atomic(out / "README.md", model_card(card, exported=exported, adapter=adapter))


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
