"""``fit`` on sentence pairs: which pair model a fit trains (``pair_encoder``, ``--pair-encoder``).

``"bi"`` (the default on pair data): a bi-encoder (:class:`~transferlab.models.BiEncoder`: the encoder shared by
both texts, a head on ``[u, v, |u - v|, u * v]`` initialised at the cosine of the two sides, so training starts
from the zero-shot retrieval); ``"cross"``: the joined pair read as one sequence by the encoder (a cross-encoder:
the text classifier as it is). Both take the joined pair as their input, so every text method trains either through
the one loop, and ``predict`` reads pairs the same way. Where the default meets a tokenizer that cannot split a
joined pair (no BERT-style separator), the fit is a cross-encoder and says so in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from ..data import Dataset, pair_texts, positive_class
from ..errors import TransferlabError

log = logging.getLogger(__name__)
#: the pair models fit trains
PAIR_ENCODERS = ("bi", "cross")


def check_pair_encoder(choice: str | None, ds: Dataset, backbone: Any) -> None:
    """A clear error for a ``pair_encoder`` that is unknown, or given for data that is not text pairs, or for a model
    that is not a text model."""
    if choice is None:
        return
    if choice not in PAIR_ENCODERS:
        raise TransferlabError(f"pair_encoder must be one of {', '.join(PAIR_ENCODERS)}; got {choice!r}")
    if ds.modality != "text" or pair_texts(ds) is None:
        raise TransferlabError(f"--pair-encoder {choice}: {ds.name} is not sentence-pair data (text_a, text_b "
                               "columns); the option chooses how a pair is encoded: leave it out for other data")
    if getattr(backbone, "modality", None) != "text":
        raise TransferlabError(f"--pair-encoder {choice} needs a text model; {backbone.ref} takes "
                               f"{getattr(backbone, 'modality', 'other')} input")


def pair_model_(built: Any, choice: str | None, train_ds: Dataset) -> str | None:
    """The pair model a fit trains on ``train_ds`` (None: not pair data): for ``"bi"``, ``built`` changes in place:
    its ``net`` becomes a bi-encoder whose sides keep ``max_length`` tokens each, the joined pair is tokenised at
    twice that (``built.max_length``, the card's), and the head starts at the cosine of the training pairs."""
    from ..models import bi_encoder, init_head_at_cosine_

    if built.modality != "text" or pair_texts(train_ds) is None:
        return None
    if choice == "cross":
        return "cross"
    try:
        net = bi_encoder(built.net, built.tokenizer, side_length=built.max_length)
    except TransferlabError as exc:
        if choice == "bi":
            raise
        log.warning("pairs: a cross-encoder (%s)", exc)
        return "cross"
    built.net, built.max_length = net, 2 * int(built.max_length)
    threshold = init_head_at_cosine_(net, built.tensors(train_ds), train_ds.labels, positive_class(train_ds))
    log.info("pairs: a bi-encoder, its head at the cosine (threshold %.4f)", threshold)
    return "bi"


def pair_structure_(prep: Any, built: Any, used: str | None) -> None:
    """A bi-encoder fit's card structure on ``prep``, in place: ``bi_encoder`` around the method's own."""
    from ..models import bi_encoder_structure

    if used == "bi":
        prep.structure = bi_encoder_structure(built.net, prep.structure)
