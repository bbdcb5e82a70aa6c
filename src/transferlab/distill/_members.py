"""Teachers and the student: networks with their own preprocessing, their classes mapped onto the data's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..data import Dataset
from ..errors import TransferlabError
from ..models import Classifier, class_order, feed_of_card, load_classifier, model_dir

log = logging.getLogger(__name__)


Member = Classifier  # a teacher or the student


def load_teacher(ref: str | Path, ds: Dataset, trust_pickle: bool = False) -> Member:
    """A frozen teacher: a model directory (fit, merge, domain, distill) or a model reference whose own head predicts
    the data's classes (e.g. ``builtin:small_resnet_shapes`` for ``builtin:shapes``)."""
    return load_classifier(ref, ds, f"teacher {ref}", trust_pickle)


def same_model(a: str | Path, b: str | Path) -> bool:
    """Whether two references name the same model (the same directory, or the same reference string)."""
    da, db = model_dir(a), model_dir(b)
    if da is not None or db is not None:
        return da is not None and db is not None and da.resolve() == db.resolve()
    return str(a).strip() == str(b).strip()


def load_student(ref: str | Path, ds: Dataset, image_size: int | None, trust_pickle: bool = False) -> Member:
    """The student: a model reference (pretrained body, a fresh head for the data's classes) or a fitted directory
    (a student that already knows the task: its classes must be the data's, in the data's order)."""
    from ..models import build, load, resolve

    d = model_dir(ref)
    if d is not None:
        net = load(d, trust_pickle=trust_pickle)
        cfg = dict(net.transferlab_config)
        if [str(c) for c in cfg["class_names"]] != [str(c) for c in ds.class_names]:
            class_order(cfg["class_names"], ds, f"the student {ref}")  # other classes: a clear error
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
        return Member(str(ref), net, cfg.get("modality", "image"), feed_of_card(cfg, getattr(
            net, "transferlab_tokenizer", None)), getattr(net, "transferlab_tokenizer", None), None, cfg, d,
            {"trained": True})
    backbone = resolve(str(ref), trust_pickle)
    if backbone.modality != ds.modality:
        raise TransferlabError(f"the student {ref} takes {backbone.modality} input but {ds.name} holds "
                               f"{ds.modality} data")
    built = build(backbone, ds.num_classes)
    if built.modality == "image":
        built.image_size = int(image_size or backbone.default_size(ds))
        feed: tuple[Any, ...] = ("image", built.image_size, tuple(built.mean), tuple(built.std), built.interpolation)
    else:
        feed = ("text", id(built.tokenizer), int(built.max_length or 256))
    return Member(str(ref), built.net, built.modality, feed, built.tokenizer, None, None, None,
                  {"trained": False, "built": built})
