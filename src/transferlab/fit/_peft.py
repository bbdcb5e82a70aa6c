"""LoRA, DoRA and IA3 through peft, on any torch model (timm CNNs and ViTs included).

Target modules are found automatically: every ``Linear`` and every non-grouped ``Conv2d`` except the classification
head (which trains in full through peft's ``modules_to_save``). Adapters save in peft's own format
(``adapter_config.json`` + ``adapter_model.safetensors``), so ``peft.PeftModel.from_pretrained`` loads them.
"""

from __future__ import annotations

from typing import Any

from ..errors import TransferlabError
from ..models import head_module_name
from ._registry import METHODS, FitContext, Prepared


def candidate_modules(model: Any) -> list[str]:
    """Names of the modules peft can adapt here: Linear layers and non-grouped 2-d convolutions."""
    import torch

    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) or (isinstance(mod, torch.nn.Conv2d) and mod.groups == 1):
            out.append(name)
    return out


def _targets(model: Any, target_modules: list[str] | str | None) -> tuple[list[str], str]:
    head = head_module_name(model)
    cands = [n for n in candidate_modules(model) if n != head and not n.startswith(head + ".")]
    if target_modules is None:
        if not cands:
            raise TransferlabError(f"{type(model).__name__} has no Linear or Conv2d layer for an adapter")
        return cands, head
    wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    matched = [n for n in cands if any(n == w or n.endswith("." + w) or n.split(".")[-1] == w for w in wanted)]
    if not matched:
        short = sorted({n.split(".")[-1] for n in cands})
        raise TransferlabError(
            f"target modules {wanted} match no adaptable layer of {type(model).__name__}; candidates: "
            f"{', '.join(short[:30])}{' ...' if len(short) > 30 else ''}")
    return matched, head


def _wrap(model: Any, config: Any, head_lr_scale: float = 1.0) -> Prepared:
    from peft import get_peft_model

    if not head_lr_scale > 0:
        raise TransferlabError(f"head_lr_scale must be > 0, got {head_lr_scale}")
    peft_model = get_peft_model(model, config)  # mutates `model` (peft #2295); we own this copy
    trained = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    # the head trains in full as peft's modules_to_save copy: it may take larger steps than the adapters
    scales = {} if head_lr_scale == 1 else {id(p): float(head_lr_scale) for n, p in trained if "modules_to_save" in n}
    return Prepared(peft_model, [p for _, p in trained], weights="peft", lr_scales=scales)


@METHODS.register("lora", summary="low-rank adapters (peft LoRA) on Linear/Conv2d layers + a trained head",
                  default_lr=1e-3, paper="Hu et al., LoRA, ICLR 2022")
def lora(model: Any, ctx: FitContext | None = None, r: int = 8, alpha: int | None = None, dropout: float = 0.0,
         target_modules: list[str] | str | None = None, use_dora: bool = False,
         head_lr_scale: float = 1.0) -> Prepared:
    """LoRA adapters on every Linear/Conv2d layer (or ``target_modules``) and the head in full, at
    ``head_lr_scale`` times the learning rate."""
    from peft import LoraConfig

    targets, head = _targets(model, target_modules)
    cfg = LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules=targets,
                     modules_to_save=[head], use_dora=use_dora)
    return _wrap(model, cfg, head_lr_scale)


@METHODS.register("dora", summary="weight-decomposed low-rank adapters (peft LoRA with use_dora)", default_lr=1e-3,
                  paper="Liu et al., DoRA, ICML 2024")
def dora(model: Any, ctx: FitContext | None = None, r: int = 8, alpha: int | None = None, dropout: float = 0.0,
         target_modules: list[str] | str | None = None) -> Prepared:
    return lora(model, ctx, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules, use_dora=True)


@METHODS.register("ia3", summary="learned rescaling of activations (peft IA3) + a trained head", default_lr=3e-3,
                  paper="Liu et al., (IA)^3, NeurIPS 2022")
def ia3(model: Any, ctx: FitContext | None = None, target_modules: list[str] | str | None = None) -> Prepared:
    from peft import IA3Config

    targets, head = _targets(model, target_modules)
    cfg = IA3Config(target_modules=targets, feedforward_modules=targets, modules_to_save=[head])
    return _wrap(model, cfg)
