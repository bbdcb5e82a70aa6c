"""Hugging Face model folders as merge inputs: which files besides the weights a merge copies, whether a folder is
one, and the shards of one saved in several files (``model.safetensors.index.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import TransferlabError

#: the index of a model saved in shards (transformers' ``save_pretrained`` above its shard size)
SHARD_INDEX = "model.safetensors.index.json"


#: a Hugging Face folder's files besides its weights, copied by a merge: AutoModel and AutoTokenizer open the output
HF_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model",
            "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json",
            "preprocessor_config.json")


def is_hf_folder(d: Path) -> bool:
    """A Hugging Face transformers model folder: its ``config.json`` has a ``model_type`` and there is no transferlab
    card (a fit directory's own ``config.json`` is timm's, or an older card)."""
    from ..models import card_file

    p = Path(d) / "config.json"
    if not p.is_file() or card_file(Path(d)) is not None:
        return False
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and isinstance(cfg.get("model_type"), str)


def copy_hf_files(sources: list[Any], dest: Path) -> list[str]:
    """Copy :data:`HF_FILES` into ``dest``, each from the first of ``sources`` that is a Hugging Face folder holding
    it (configs, vocabularies; by :func:`transferlab._io.copy_inside`: no link out of its folder); the names copied."""
    from .._io import copy_inside

    done = []
    for name in HF_FILES:
        src = next((s for s in sources if s.hf and s.path is not None and (s.path / name).is_file()), None)
        if src is not None:
            copy_inside(src.path / name, src.path, dest / name)
            done.append(name)
    return done


def shard_files(d: Path, label: str) -> list[Path]:
    """The shard files ``d``'s :data:`SHARD_INDEX` names, each a plain file inside ``d`` (a name with a path in it,
    or one that is missing, is refused by name)."""
    try:
        index = json.loads((d / SHARD_INDEX).read_text())
        names = sorted(set(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise TransferlabError(f"{label}: {d / SHARD_INDEX} is not a shard index (a JSON object with a "
                               "weight_map): restore it or save the model again") from None
    out = []
    for name in names:
        f = d / str(name)
        if Path(str(name)).name != name or not f.is_file() or f.is_symlink() and not f.resolve().is_relative_to(
                d.resolve()):
            raise TransferlabError(f"{label}: {d / SHARD_INDEX} names the shard {name!r}, which is not a file of "
                                   f"{d}: restore the missing shard or save the model again")
        out.append(f)
    if not out:
        raise TransferlabError(f"{label}: {d / SHARD_INDEX} names no shard")
    return out


#: the key of a merged folder's ``config.json`` that lists every task's head
HEADS_KEY = "transferlab_task_heads"


def record_heads(dest: Path, heads: dict[str, dict[str, Any]]) -> None:
    """Into ``dest/config.json`` (a merged Hugging Face or timm folder), :data:`HEADS_KEY`: one head per task, each
    with its file and labels, whether their label sets differ, and which head the folder's own weights and
    ``id2label`` are (the first task's). Nothing without a ``config.json`` or heads."""
    from .._io import write_json_atomic

    p = dest / "config.json"
    if not heads or not p.is_file():
        return
    cfg = json.loads(p.read_text())
    first = next(iter(heads))
    differ = len({tuple(h["class_names"]) for h in heads.values()}) > 1
    cfg[HEADS_KEY] = {
        "note": (f"one classification head per task{' (their label sets differ)' if differ else ''}: this folder's "
                 f"weights and labels (id2label, num_labels) are task {first!r}'s head; every task's head is "
                 "heads/<task>.safetensors: transferlab.models.load(folder, head=task), transferlab predict --head"),
        "default": first, "label_sets_differ": differ,
        "heads": {n: {"file": h["file"], "num_labels": h["num_classes"],
                      "id2label": {str(i): c for i, c in enumerate(h["class_names"])}} for n, h in heads.items()}}
    write_json_atomic(p, cfg)
