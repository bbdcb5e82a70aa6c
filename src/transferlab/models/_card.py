"""The model card: ``transferlab.json`` of a saved adapted model, versioned and validated.

Format 2 says, as data, everything :func:`~transferlab.models.load` needs: the architecture, the preprocessing, how
the weights are stored (``weights``: a full ``state_dict``, a ``peft`` adapter over the model reference, or only the
``trained`` tensors over it) and which extra modules to rebuild before loading them (``structure``: its ``kind``
names an entry of :data:`~transferlab.models.STRUCTURES`). Format 1 (written by fit and merge before format 2) named
only the fit method; :func:`read_card` translates it, so those directories still load.

The card was called ``config.json`` until that name went to the config timm reads (``timm.create_model("local-dir:"
+ DIR)``); a directory without ``transferlab.json`` is read from its ``config.json`` when that is a transferlab card.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import TransferlabError

log = logging.getLogger(__name__)
FORMAT = 2
#: the card's file name; older directories have it as :data:`OLD_CARD_FILE`
CARD_FILE = "transferlab.json"
OLD_CARD_FILE = "config.json"
#: format 1 stored peft adapters for these fit methods, and rebuilt adapter modules for these (a closed, historical
#: list: format 2 records both as data)
_FORMAT1_PEFT = ("lora", "dora", "ia3")


class Head(BaseModel):
    """One task's classification head of a merged model (``heads/<task>.safetensors``)."""

    model_config = ConfigDict(extra="allow")

    file: str
    num_classes: int
    class_names: list[str]


class ModelCard(BaseModel):
    """``transferlab.json`` of a saved model. Unknown keys load with a warning (a newer transferlab wrote them)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format: int = Field(FORMAT, description="card format (1: fit/merge before transferlab 0.2; 2: this one)")
    transferlab_version: str | None = Field(None, description="the transferlab that wrote it")
    model: str | None = Field(None, description="the model reference it started from (peft and trained-only weights "
                              "load over it); a local path in it is relative to the model directory")
    method: str | None = Field(None, description="how it was made: a fit method, 'merge', ...")
    modality: Literal["image", "text"] = Field("image", description="what it takes")
    architecture: dict[str, Any] = Field(description="library + name (+ kwargs / transformers config) to rebuild")
    num_classes: int = Field(ge=0, description="outputs of the (selected) head")
    class_names: list[str] = Field(default_factory=list)
    image_size: int | None = Field(None, description="images: side in pixels")
    mean: list[float] | None = Field(None, description="images: normalisation mean")
    std: list[float] | None = Field(None, description="images: normalisation std")
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = Field(
        None, description="images: how inputs are resized (the pretrained model's own); absent (cards written "
        "before it was recorded): bilinear")
    max_length: int | None = Field(None, description="texts: tokens kept")
    weights: Literal["state_dict", "peft", "trained"] = Field(
        "state_dict", description="model.safetensors (the whole network), a peft adapter (adapter_model.safetensors) "
        "over the reference, or 'trained': model.safetensors holds what the fit changed (trained parameters, buffers, "
        "the head, added modules) and loads over the reference")
    structure: dict[str, Any] = Field(default_factory=dict, description="extra modules to rebuild before loading: "
                                      "{'kind': <entry of STRUCTURES>, ...its options}")
    options: dict[str, Any] = Field(default_factory=dict, description="the method's options")
    train: dict[str, Any] | None = None
    init: str | None = None
    heads: dict[str, Head] | None = Field(None, description="merged models: one head per task")
    head: str | None = Field(None, description="dotted name of the classification head")
    merge: dict[str, Any] | None = None
    selected_head: str | None = None
    teachers: list[str] | None = Field(None, description="distilled models: the teachers (local paths relative to the "
                                       "model directory)")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    def preprocessing(self) -> dict[str, Any]:
        if self.modality == "text":
            return {"max_length": self.max_length}
        return {"image_size": self.image_size, "mean": self.mean, "std": self.std,
                "interpolation": interpolation_of({"interpolation": self.interpolation})}


def interpolation_of(card: dict[str, Any]) -> str:
    """The resize interpolation a card (as a dict) records; a card written before it was recorded (no field, or
    null) was trained and evaluated with bilinear resizes."""
    return str(card.get("interpolation") or "bilinear")


class FolderCard(BaseModel):
    """``transferlab.json`` of a merge of plain Hugging Face folders (no transferlab head, no architecture to
    rebuild): what was merged and how. The folder opens in transformers; :func:`read_card` refuses it with that
    advice."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format: int = FORMAT
    transferlab_version: str | None = None
    model: str | None = None
    method: Literal["merge"] = "merge"
    merge: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


def _from_format1(raw: dict[str, Any]) -> dict[str, Any]:
    """A format-1 config as a format-2 card: the fit method named how weights were stored and what to rebuild."""
    d = dict(raw)
    method = d.get("method") or ""
    d["weights"] = "peft" if method in _FORMAT1_PEFT else "state_dict"
    old = d.get("structure") or {}
    if method == "adapter":
        d["structure"] = {"kind": "adapters", "config": dict(d.get("options") or {}),
                          "image_size": d.get("image_size") or 64}
    elif method == "mam":
        from ._adapters import mam_config  # torch modules: only when a format-1 MAM card is read

        o = d.get("options") or {}
        d["structure"] = {"kind": "adapters", "image_size": d.get("image_size") or 64,
                          "config": mam_config(**{k: o[k] for k in ("r", "prefix", "scaling") if k in o}).model_dump()}
    elif method == "scalearn":
        d["structure"] = {"kind": "scaled_sources", **old}
    else:
        d["structure"] = {}
    d["format"] = 1
    return d


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_card(raw: Any) -> bool:
    """A transferlab card (any format), not timm's or transformers' ``config.json``."""
    return isinstance(raw, dict) and isinstance(raw.get("architecture"), dict)


def card_file(model_dir: Path) -> Path | None:
    """Where ``model_dir``'s card is: ``transferlab.json``, or an older directory's ``config.json`` when that is a
    transferlab card; None when there is none."""
    new = Path(model_dir) / CARD_FILE
    if new.is_file():
        return new
    old = Path(model_dir) / OLD_CARD_FILE
    return old if old.is_file() and _is_card(_json(old)) else None


def read_card(model_dir: Path) -> ModelCard:
    """The validated card of ``model_dir`` (format 1 or 2; ``transferlab.json``, or ``config.json`` as older
    transferlab wrote it)."""
    model_dir = Path(model_dir)
    path = model_dir / CARD_FILE
    if not path.is_file():
        path = model_dir / OLD_CARD_FILE
        if not path.is_file():
            raise TransferlabError(f"{model_dir} holds no {CARD_FILE}: not a transferlab model directory")
    raw = _json(path)
    if raw is None:
        raise TransferlabError(f"{path} is not readable JSON: restore it or refit the model")
    if not isinstance(raw, dict):
        raise TransferlabError(f"{path} is not a JSON object")
    if path.name == OLD_CARD_FILE and not _is_card(raw):
        raise TransferlabError(f"{model_dir} holds no {CARD_FILE}, and its {OLD_CARD_FILE} is not a transferlab model "
                               "card (another library's config, as timm and Hugging Face models have): not a "
                               "transferlab model directory")
    fmt = raw.get("format", 1)
    if fmt not in (1, FORMAT):
        raise TransferlabError(f"{model_dir} was written in model format {fmt!r} (transferlab "
                               f"{raw.get('transferlab_version')}); this transferlab reads formats 1 and {FORMAT}: "
                               "upgrade transferlab")
    if fmt == 1:
        raw = _from_format1(raw)
    if raw.get("method") == "merge" and "architecture" not in raw:  # a merge of plain Hugging Face folders
        raise TransferlabError(
            f"{model_dir} is a merged Hugging Face model without a transferlab head: open it with "
            f"transformers (AutoModel.from_pretrained('{model_dir}')); predict and eval need a model with a "
            "classification head (merge transferlab fits of it, or fit a head on it: transferlab fit DATA -m "
            f"hf:{model_dir})")
    try:
        card = ModelCard.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TransferlabError(f"{path} is not a valid model card: "
                               f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    extra = sorted(card.model_extra or {})
    if extra:
        log.warning("%s: ignoring unknown card keys %s (written by transferlab %s)", model_dir, extra,
                    card.transferlab_version)
    return card
