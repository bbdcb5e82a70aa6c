"""Teachers and the student: networks with their own preprocessing, their classes mapped onto the data's."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Dataset
from ..errors import TransferlabError, few

log = logging.getLogger(__name__)


@dataclass
class Member:
    """A teacher or the student. ``feed``: how its inputs are made (images: ``("image", size, mean, std)``; text:
    ``("text", tokenizer id, max_length)``; members with equal feeds share inputs); ``order``: for each of the data's
    classes, the column of this network's output (None: already the data's order); ``card``: the card of a model
    directory (None for a reference)."""

    ref: str
    net: Any
    modality: str
    feed: tuple[Any, ...]
    tokenizer: Any = None
    order: list[int] | None = None
    card: dict[str, Any] | None = None
    directory: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return int(sum(p.numel() for p in self.net.parameters()))


def _model_dir(ref: str | Path) -> Path | None:
    from ..models import card_file

    p = Path(ref).expanduser()
    return p if p.is_dir() and card_file(p) is not None else None


def _feed_of_card(cfg: dict[str, Any], tokenizer: Any) -> tuple[Any, ...]:
    if cfg.get("modality", "image") == "text":
        return ("text", id(tokenizer), int(cfg.get("max_length") or 256))
    return ("image", int(cfg["image_size"]), tuple(cfg["mean"]), tuple(cfg["std"]))


def _order(names: tuple[str, ...] | list[str], ds: Dataset, what: str) -> list[int] | None:
    names = [str(n) for n in names]
    data = [str(n) for n in ds.class_names]
    if sorted(names) != sorted(data) or len(set(names)) != len(names):
        only_m = [c for c in names if c not in data]
        only_d = [c for c in data if c not in names]
        detail = "; ".join(x for x in (f"only {what} has {few(only_m)}" if only_m else "",
                                       f"only {ds.name} has {few(only_d)}" if only_d else "") if x)
        raise TransferlabError(f"{what} predicts other classes than {ds.name} ({len(names)} vs {len(data)} classes: "
                               f"{detail or 'repeated class names'}): a teacher needs a head for the data's classes "
                               "(fit one: transferlab fit DATA -m REF --out DIR, and pass DIR)")
    return None if names == data else [names.index(c) for c in data]


def load_teacher(ref: str | Path, ds: Dataset, trust_pickle: bool = False) -> Member:
    """A frozen teacher: a model directory (fit, merge, domain, distill) or a model reference whose own head predicts
    the data's classes (e.g. ``builtin:small_resnet_shapes`` for ``builtin:shapes``)."""
    from ..models import load, resolve

    d = _model_dir(ref)
    if d is not None:
        net = load(d, trust_pickle=trust_pickle)
        cfg = net.transferlab_config
        member = Member(str(ref), net, cfg.get("modality", "image"), _feed_of_card(cfg, net.transferlab_tokenizer),
                        net.transferlab_tokenizer, _order(cfg["class_names"], ds, f"teacher {ref}"), cfg, d)
    else:
        if Path(str(ref)).expanduser().exists() and ":" not in str(ref):
            raise TransferlabError(f"teacher {ref} is a path without a transferlab model card (transferlab.json): "
                                   "pass a directory written by fit, merge, domain or distill")
        backbone = resolve(str(ref), trust_pickle)
        heads = getattr(backbone, "head_classes", None)
        if not getattr(backbone, "has_head", False) or heads is None:
            raise TransferlabError(f"teacher {ref} has no head for {ds.name}'s classes that transferlab can read: fit "
                                   f"it first (transferlab fit DATA -m {ref} --out DIR) and pass DIR as the teacher")
        if backbone.modality != "image":
            raise TransferlabError(f"teacher {ref}: only image model references carry a usable head; pass a fitted "
                                   "directory")
        net = backbone.model
        size = int(backbone.native_size)
        member = Member(str(ref), net, "image", ("image", size, tuple(backbone.mean), tuple(backbone.std)),
                        order=_order(heads(), ds, f"teacher {ref}"))
    if member.modality != ds.modality:
        raise TransferlabError(f"teacher {ref} takes {member.modality} input but {ds.name} holds {ds.modality} data")
    for p in member.net.parameters():
        p.requires_grad_(False)
    member.net.eval()
    return member


def same_model(a: str | Path, b: str | Path) -> bool:
    """Whether two references name the same model (the same directory, or the same reference string)."""
    da, db = _model_dir(a), _model_dir(b)
    if da is not None or db is not None:
        return da is not None and db is not None and da.resolve() == db.resolve()
    return str(a).strip() == str(b).strip()


def load_student(ref: str | Path, ds: Dataset, image_size: int | None, trust_pickle: bool = False) -> Member:
    """The student: a model reference (pretrained body, a fresh head for the data's classes) or a fitted directory
    (a student that already knows the task: its classes must be the data's, in the data's order)."""
    from ..models import build, load, resolve

    d = _model_dir(ref)
    if d is not None:
        net = load(d, trust_pickle=trust_pickle)
        cfg = dict(net.transferlab_config)
        if [str(c) for c in cfg["class_names"]] != [str(c) for c in ds.class_names]:
            _order(cfg["class_names"], ds, f"the student {ref}")  # other classes: a clear error
            raise TransferlabError(f"the student {ref} has {ds.name}'s classes in another order; refit it on {ds.name}")
        if image_size is not None and cfg.get("modality", "image") == "image" and image_size != cfg["image_size"]:
            raise TransferlabError(f"the student {ref} was trained at {cfg['image_size']} px; it keeps its input size "
                                   f"(drop --image-size {image_size})")
        if cfg.get("weights") == "peft":  # the adapters folded into the weights: an ordinary network to train
            tokenizer = getattr(net, "transferlab_tokenizer", None)
            net = net.merge_and_unload()
            net.transferlab_config, net.transferlab_tokenizer = cfg, tokenizer
        net.train()
        for p in net.parameters():
            p.requires_grad_(True)
        return Member(str(ref), net, cfg.get("modality", "image"), _feed_of_card(cfg, getattr(
            net, "transferlab_tokenizer", None)), getattr(net, "transferlab_tokenizer", None), None, cfg, d,
            {"trained": True})
    backbone = resolve(str(ref), trust_pickle)
    if backbone.modality != ds.modality:
        raise TransferlabError(f"the student {ref} takes {backbone.modality} input but {ds.name} holds "
                               f"{ds.modality} data")
    built = build(backbone, ds.num_classes)
    if built.modality == "image":
        built.image_size = int(image_size or backbone.default_size(ds))
        feed: tuple[Any, ...] = ("image", built.image_size, tuple(built.mean), tuple(built.std))
    else:
        feed = ("text", id(built.tokenizer), int(built.max_length or 256))
    return Member(str(ref), built.net, built.modality, feed, built.tokenizer, None, None, None,
                  {"trained": False, "built": built})
