"""The bi-encoder pair model (``fit --pair-encoder bi``, issue 34 item 5): one encoder shared by both texts of a pair,
each side encoded on its own and pooled as the text model pools (``_text``), then L2-normalised: ``u`` and ``v``; a
linear head on ``[u, v, |u - v|, u * v]`` (Reimers & Gurevych, EMNLP 2019, Sentence-BERT's classification
objective; the features ``rank`` scores pairs with).

The model takes the same input as every text model: the pair joined by :data:`~transferlab.data.PAIR_SEP`,
tokenised as one sequence (``[CLS] a [SEP] b [SEP]`` for a BERT-family tokenizer), so ``predict``, ``eval``,
``save`` and ``load`` read pairs unchanged. :class:`BiEncoder` splits each sequence at its first separator token:
side ``a`` is ``[CLS] a [SEP]``, side ``b`` is ``[CLS]`` followed by ``b [SEP]`` moved to the front, exactly what the
tokenizer gives for each text alone; both sides go through the encoder in one batch. Each side is cut at
``side_length`` tokens as the tokenizer cuts a text (``[CLS]``, the first tokens, ``[SEP]``), so a fit tokenises the
joined pair at twice that (the card's ``max_length``): only a pair longer than that loses the end of ``b``.

The head starts at the zero-shot retrieval (:func:`init_head_at_cosine_`): as ``u`` and ``v`` have unit length,
``sum(u * v)`` is their cosine, so with the ``u * v`` block of the positive class's weights at ``s`` (10), every other
weight 0, and the positive class's bias at ``-s t`` (``t``: the training pairs' cosine quantile at the share of
non-positive pairs), the positive logit minus any other is ``s (cos(u, v) - t)``: before any training the model
orders the candidates of a query by the cosine of the two sides. The saved model's card records the structure
``bi_encoder`` (with the separator and CLS token ids, and the structure of a method that adds modules, ``inner``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data import PAIR_SEP
from ..errors import TransferlabError
from ._structures import STRUCTURES
from ._text import TextClassifier, _torch

#: the cosine-initialised head's scale ``s`` (benchmarks/bench_pairs.py --probe: 0.45-0.47 acc@1 at any lr)
COSINE_SCALE = 10.0


class BiEncoder(TextClassifier):
    """A :class:`TextClassifier` that reads a joined pair as two texts: ``head(dropout([u, v, |u - v|, u * v]))``
    with ``u``, ``v`` the L2-normalised pooled encodings of the two sides (see the module). ``num_features`` is the
    head's input (4 times the encoder's width, ``encoder_features``); the encoder, the head and their names are the
    text classifier's, so every text method adapts it as it adapts a text classifier."""

    def __init__(self, encoder: Any, num_classes: int, pooling: str = "mean", normalize: bool = False,
                 dropout: float = 0.1, names: Mapping[str, str] | None = None, *, sep_id: int, cls_id: int,
                 side_length: int | None = None) -> None:
        super().__init__(encoder, num_classes, pooling, normalize, dropout, names)
        self.encoder_features = self.num_features
        self.num_features = 4 * self.encoder_features
        self.sep_id, self.cls_id = int(sep_id), int(cls_id)
        self.side_length = int(side_length) if side_length else None
        self.reset_classifier(num_classes)

    @classmethod
    def from_classifier(cls, net: TextClassifier, sep_id: int, cls_id: int,
                        side_length: int | None = None) -> BiEncoder:
        """The bi-encoder over ``net``'s encoder (shared, not copied), with a fresh head of ``net``'s classes."""
        bi = cls(net.encoder, net.num_classes, net.pooling, net.normalize, net.drop.p, net.names, sep_id=sep_id,
                 cls_id=cls_id, side_length=side_length)
        bi.architecture = dict(net.architecture)
        return bi

    def sides(self, x: Any) -> tuple[Any, Any]:
        """The two sides of joined pairs ``[B, 2, L]`` (ids, mask), each ``[B, 2, L]`` and left-aligned."""
        torch = _torch()
        if isinstance(x, Mapping):
            ids = x["input_ids"]
            mask = x.get("attention_mask")
            x = torch.stack([ids, torch.ones_like(ids) if mask is None else mask], 1)
        ids, mask = x[:, 0], x[:, 1]
        pos = torch.arange(ids.shape[1], device=ids.device)
        is_sep = (ids == self.sep_id) & (mask > 0)
        last = (mask.sum(1) - 1).clamp_min(0)
        first = torch.where(is_sep.any(1), is_sep.int().argmax(1), last)  # the first separator: a's end
        mask_a = mask * (pos[None, :] <= first[:, None])
        shifted = first[:, None] + pos[None, :]  # b's j-th token sits at first + j (j >= 1); j = 0 becomes [CLS]
        inside = shifted < ids.shape[1]
        shifted = shifted.clamp_max(ids.shape[1] - 1)
        ids_b = torch.gather(ids, 1, shifted)
        mask_b = torch.gather(mask, 1, shifted) * inside
        ids_b[:, 0], mask_b[:, 0] = self.cls_id, 1
        return self._cut(ids, mask_a), self._cut(ids_b, mask_b)

    def _cut(self, ids: Any, mask: Any) -> Any:
        """One side ``[B, 2, L']``, each text cut as the tokenizer cuts it at ``side_length``: ``[CLS]``, its first
        ``side_length - 2`` tokens, ``[SEP]``."""
        torch = _torch()
        m = self.side_length
        if m is not None and ids.shape[1] > m:
            long = mask.sum(1) > m
            ids, mask = ids[:, :m].clone(), mask[:, :m]
            ids[long, m - 1] = self.sep_id
        return torch.stack([ids, mask], 1)

    def encode_sides(self, x: Any) -> tuple[Any, Any]:
        """``(u, v)``: the L2-normalised pooled encodings of each pair's two sides (one encoder pass for both)."""
        torch = _torch()
        a, b = self.sides(x)
        pooled = super().forward_features(torch.cat([a, b]))
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled[:len(a)], pooled[len(a):]

    def forward_features(self, x: Any) -> Any:
        torch = _torch()
        u, v = self.encode_sides(x)
        return torch.cat([u, v, (u - v).abs(), u * v], 1)

    def probe_features(self, backbone: Any, ds: Any, cache: Any = None) -> np.ndarray:
        """``[u, v, |u - v|, u * v]`` of the pairs ``ds`` from ``backbone``'s zoo features of each side (what
        ``linear_probe`` fits its logistic regression on; the features the encoder gives, cached by the zoo)."""
        from ..data import Dataset, pair_texts
        from ..zoo import extract_features

        sides = pair_texts(ds)
        if sides is None:
            raise TransferlabError(f"{ds.name} is not pair data (text_a, text_b): a bi-encoder reads pairs")
        a, b = sides
        texts = Dataset(f"{ds.name}-sides", "text", a + b, np.zeros(2 * len(a), dtype=np.int64), ("?",), ds.split)
        f = extract_features(backbone, texts, cache=cache).features.astype(np.float64)
        f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        u, v = f[:len(a)], f[len(a):]
        return np.concatenate([u, v, np.abs(u - v), u * v], 1)


def separator_ids(tokenizer: Any) -> tuple[int, int]:
    """``(sep_id, cls_id)`` of a tokenizer that reads :data:`PAIR_SEP` as its separator token between a ``[CLS]``
    and a final separator (BERT's family); a clear error for any other."""
    sep, cls = getattr(tokenizer, "sep_token_id", None), getattr(tokenizer, "cls_token_id", None)
    ids = list(tokenizer("a" + PAIR_SEP + "b")["input_ids"]) if sep is not None and cls is not None else []
    if not ids or ids[0] != cls or ids.count(sep) != 2 or ids[-1] != sep:
        raise TransferlabError(f"a bi-encoder splits each pair at its tokenizer's separator token, but this tokenizer "
                               f"({type(tokenizer).__name__}) does not read {PAIR_SEP.strip()!r} as one between a CLS "
                               "token and a final separator (BERT's family does): use --pair-encoder cross")
    return int(sep), int(cls)


def bi_encoder(net: Any, tokenizer: Any, side_length: int | None = None) -> BiEncoder:
    """The bi-encoder over a text classifier ``net`` and its tokenizer (:func:`separator_ids`); ``side_length``:
    the tokens each side keeps (None: all the joined pair's input holds)."""
    if not isinstance(net, TextClassifier):
        raise TransferlabError(f"a bi-encoder pair model needs a text model; got a {type(net).__name__}")
    return BiEncoder.from_classifier(net, *separator_ids(tokenizer), side_length=side_length)


def init_head_at_cosine_(net: BiEncoder, data: Any, labels: np.ndarray, positive: int, scale: float = COSINE_SCALE,
                         batch_size: int = 64) -> float:
    """Set ``net``'s head, in place, so that the positive class's logit minus any other's is ``scale * (cos(u, v) -
    t)`` (see the module); ``t``, returned: the cosines of ``data`` (a torch dataset of joined pairs) at the quantile
    of the share of ``labels`` that are not ``positive``."""
    from ._infer import infer

    feats = infer(net, data, batch_size, features=True, check_finite=False).features
    assert feats is not None
    d = net.encoder_features
    cos = feats[:, 3 * d:].astype(np.float64).sum(1)
    t = float(np.quantile(cos, float(np.mean(np.asarray(labels) != positive))))
    head = net.head
    torch = _torch()
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[positive, 3 * d:] = scale
        head.bias[positive] = -scale * t
    return t


def bi_encoder_structure(net: BiEncoder, inner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The card's ``structure`` of a bi-encoder; ``inner``: the structure of the modules a method added to it."""
    out: dict[str, Any] = {"kind": "bi_encoder", "sep_id": net.sep_id, "cls_id": net.cls_id,
                           "side_length": net.side_length, "features": "u,v,|u-v|,u*v"}
    if inner:
        out["inner"] = dict(inner)
    return out


@STRUCTURES.register("bi_encoder", summary="a bi-encoder pair model: [u, v, |u-v|, u*v] of the two sides")
def _rebuild(net: Any, state: dict[str, Any], structure: dict[str, Any]) -> Any:
    """The saved bi-encoder: the recorded text classifier as a :class:`BiEncoder`, then a method's own modules
    (``inner``) rebuilt on it."""
    if not isinstance(net, TextClassifier):
        raise TransferlabError(f"a bi_encoder structure needs a text model; the card records a {type(net).__name__}")
    bi: Any = BiEncoder.from_classifier(net, int(structure["sep_id"]), int(structure["cls_id"]),
                                        structure.get("side_length"))
    inner = structure.get("inner")
    if inner:
        bi = STRUCTURES.get(str(inner.get("kind")))(bi, state, inner)
    return bi
