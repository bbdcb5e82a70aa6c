"""A frozen classifier for a dataset's classes, with its own preprocessing: a model directory (fit, merge, domain,
distill, continual) or a model reference whose own head predicts those classes (the built-in small models know their
pretraining classes). Distillation's teachers and pruning's surrogates are both this."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import TransferlabError, few


@dataclass
class Classifier:
    """``feed``: how its inputs are made (images: ``("image", size, mean, std, interpolation)``, the resize its
    card or its pretrained config names; text: ``("text", tokenizer id, max_length)``; networks with equal feeds can
    share inputs); ``order``: for each of the data's classes, the column of this network's output (None: already the
    data's order); ``card``: the card of a model directory (None for a reference)."""

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
    def interpolation(self) -> str:
        """How images are resized for this network (its feed's; text: not applicable, bilinear)."""
        return str(self.feed[4]) if self.modality == "image" else "bilinear"

    @property
    def params(self) -> int:
        return int(sum(p.numel() for p in self.net.parameters()))

    def inputs(self, ds: Dataset) -> Any:
        """``ds`` as a torch dataset of ``(input, label)`` with this network's preprocessing (un-augmented)."""
        if self.modality == "text":
            from ._text import TextTensors

            return TextTensors(ds, self.tokenizer, self.feed[2])
        from ._inputs import ImageTensors

        _, size, mean, std, interpolation = self.feed
        return ImageTensors(ds, size, mean, std, interpolation=interpolation)

    def logits(self, ds: Dataset, batch_size: int = 64) -> np.ndarray:
        """Logits [N, C] on ``ds``, columns in the data's class order."""
        from ._infer import predict_logits

        z = predict_logits(self.net, self.inputs(ds), batch_size)
        return z if self.order is None else z[:, self.order]


def model_dir(ref: str | Path) -> Path | None:
    """``ref`` as a transferlab model directory, or None."""
    from ._card import card_file

    p = Path(ref).expanduser()
    return p if p.is_dir() and card_file(p) is not None else None


def feed_of_card(cfg: dict[str, Any], tokenizer: Any) -> tuple[Any, ...]:
    if cfg.get("modality", "image") == "text":
        return ("text", id(tokenizer), int(cfg.get("max_length") or 256))
    from ._card import interpolation_of

    return ("image", int(cfg["image_size"]), tuple(cfg["mean"]), tuple(cfg["std"]), interpolation_of(cfg))


def class_order(names: tuple[str, ...] | list[str], ds: Dataset, what: str) -> list[int] | None:
    """For each of ``ds``'s classes, its column among ``names``; other classes are a clear error naming them."""
    names = [str(n) for n in names]
    data = [str(n) for n in ds.class_names]
    if sorted(names) != sorted(data) or len(set(names)) != len(names):
        only_m = [c for c in names if c not in data]
        only_d = [c for c in data if c not in names]
        detail = "; ".join(x for x in (f"only {what} has {few(only_m)}" if only_m else "",
                                       f"only {ds.name} has {few(only_d)}" if only_d else "") if x)
        raise TransferlabError(f"{what} predicts other classes than {ds.name} ({len(names)} vs {len(data)} classes: "
                               f"{detail or 'repeated class names'}): it needs a head for the data's classes "
                               "(fit one: transferlab fit DATA -m REF --out DIR, and pass DIR)")
    return None if names == data else [names.index(c) for c in data]


def load_classifier(ref: str | Path, ds: Dataset, what: str = "the model", trust_pickle: bool = False) -> Classifier:
    """A frozen classifier for ``ds``'s classes (``what`` names it in errors, e.g. ``"teacher runs/t"``)."""
    from ._build import resolve
    from ._saved import load

    d = model_dir(ref)
    if d is not None:
        net = load(d, trust_pickle=trust_pickle)
        cfg = net.transferlab_config
        c = Classifier(str(ref), net, cfg.get("modality", "image"), feed_of_card(cfg, net.transferlab_tokenizer),
                       net.transferlab_tokenizer, class_order(cfg["class_names"], ds, what), cfg, d)
    else:
        if Path(str(ref)).expanduser().exists() and ":" not in str(ref):
            raise TransferlabError(f"{what} is a path without a transferlab model card (transferlab.json): pass a "
                                   "directory written by fit, merge, domain or distill")
        backbone = resolve(str(ref), trust_pickle)
        heads = getattr(backbone, "head_classes", None)
        if not getattr(backbone, "has_head", False) or heads is None:
            raise TransferlabError(f"{what} has no head for {ds.name}'s classes that transferlab can read: fit it "
                                   f"first (transferlab fit DATA -m {ref} --out DIR) and pass DIR")
        if backbone.modality != "image":
            raise TransferlabError(f"{what}: only image model references carry a usable head; pass a fitted "
                                   "directory")
        c = Classifier(str(ref), backbone.model, "image",
                       ("image", int(backbone.native_size), tuple(backbone.mean), tuple(backbone.std),
                        backbone.interpolation), order=class_order(heads(), ds, what))
    if c.modality != ds.modality:
        raise TransferlabError(f"{what} takes {c.modality} input but {ds.name} holds {ds.modality} data")
    for p in c.net.parameters():
        p.requires_grad_(False)
    c.net.eval()
    return c
