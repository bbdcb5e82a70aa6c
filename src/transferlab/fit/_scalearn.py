"""ScaLearn: transfer from several source tasks by learning only how much of each frozen source adapter to use
(Frohmann et al., "ScaLearn: Simple and Highly Parameter-Efficient Task Transfer by Learning to Scale", ACL Findings
2024; reference: CPJKU/ScaLearn).

Every adapted layer computes ``h + sum_k omega_k * delta_k(z)``, with ``delta_k`` the frozen adapter of source task k
(trained by ``transferlab fit --method adapter`` on the same base model and placement) and ``omega_k`` learned: a
vector over the hidden dimension (ScaLearn) or one scalar (``uniform=True``, ScaLearnUniform). Only the omegas and the
new head train. We initialise omega at 1/K (an average of the sources); this choice is ours.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..errors import TransferlabError
from ..models import (
    Adapted,
    ResidualAdapted,
    ScaledSources,
    architecture_key,
    architecture_of,
    card_file,
    load,
    read_card,
    replace_module_,
    scaled_structure,
)
from ._registry import METHODS, FitContext, Prepared


def _source_adapters(sources: list[str | Path], arch: dict[str, Any]) -> tuple[list[dict[str, Any]], str, bool]:
    if len(sources) < 2:
        raise TransferlabError(f"scalearn needs at least 2 source adapters (fits made with --method adapter); got "
                               f"{len(sources)}")
    per_source, insertion, names = [], None, None
    for s in sources:
        d = Path(s)
        if card_file(d) is None:
            raise TransferlabError(f"scalearn source {s} is not a transferlab fit directory")
        card = read_card(d)
        if card.method != "adapter":
            raise TransferlabError(f"scalearn source {s} was fitted with {card.method!r}; sources must be "
                                   "'adapter' fits")
        if architecture_key(card.architecture) != architecture_key(arch):
            raise TransferlabError(f"scalearn source {s} adapts a {card.architecture.get('name')}, not a "
                                   f"{arch.get('name')}")
        net = load(d)
        adapted = {n: m for n, m in net.named_modules() if isinstance(m, (Adapted, ResidualAdapted))}
        residual = any(isinstance(m, ResidualAdapted) for m in adapted.values())
        ins = {m.insertion for m in adapted.values()}
        if names is not None and set(adapted) != names:
            raise TransferlabError(f"scalearn sources adapt different layers ({s} differs from {sources[0]}): use the "
                                   "same placement for every source")
        if insertion is not None and ins != {insertion}:
            raise TransferlabError("scalearn sources must share the adapter insertion (sequential or parallel)")
        names, insertion = set(adapted), next(iter(ins))
        per_source.append({n: m.adapter for n, m in adapted.items()})
    return per_source, insertion or "parallel", residual


@METHODS.register("scalearn", summary="learn per-layer scalings of >= 2 frozen source adapters (+ head)",
                  default_lr=1e-2, paper="Frohmann et al., ScaLearn, ACL Findings 2024")
def scalearn(model: Any, ctx: FitContext, sources: list[str] | None = None, uniform: bool = False) -> Prepared:
    per_source, insertion, residual = _source_adapters(list(sources or []), architecture_of(model))
    for p in model.parameters():
        p.requires_grad_(False)
    omegas = []
    for name in sorted(per_source[0]):
        wrapped = ScaledSources(model.get_submodule(name), [copy.deepcopy(s[name]) for s in per_source], insertion,
                                uniform, residual)
        replace_module_(model, name, wrapped)
        omegas.append(wrapped.omega)
    head = list(model.get_classifier().parameters())
    for p in head:
        p.requires_grad_(True)
    return Prepared(model, omegas + head, structure=scaled_structure(model))


