"""Unified-view adapters (He et al., "Towards a Unified View of Parameter-Efficient Transfer Learning", ICLR 2022)
on any torch model, timm CNNs and ViTs included. peft has none of these (peft #244).

Every variant modifies a hidden state ``h <- h + s * delta``:

- function: a bottleneck ``delta = W_up act(W_down z)`` (rank ``r``; ``W_up`` starts at zero, so the adapted model
  starts exactly as the pretrained one);
- insertion: ``sequential`` (``z`` is the wrapped module's output) or ``parallel`` (``z`` is its input, average-pooled
  to the output's resolution where a CNN block downsamples);
- placement: after attention (``attn``), after the feed-forward network (``ffn``), or after whole blocks (``block``,
  the choice for CNNs, where the adapter acts on channels with 1x1 projections);
- scaling ``s``: fixed, or ``learned`` (one scalar per adapter, initialised at ``scaling``);
- ``mam``: the paper's best combination where the backbone has attention: prefix tuning on attention (``prefix``
  learned key/value vectors per layer) and a parallel FFN adapter with s = 4.

``inject_adapters_(model, config)`` changes the model in place and returns the adapter parameters.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import TransferlabError
from ._structures import STRUCTURES


class AdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(16, ge=1, description="bottleneck width")
    insertion: Literal["sequential", "parallel"] = Field("parallel", description="where the adapter reads")
    placement: Literal["auto", "attn", "ffn", "both", "block"] = Field(
        "auto", description="which modules to adapt (auto: ffn for attention models, block for CNNs)")
    scaling: float = Field(1.0, description="s in h + s * delta")
    learned_scaling: bool = Field(False, description="learn s (one scalar per adapter)")
    prefix: int = Field(0, ge=0, description="prefix-tuning length on attention (0: none)")


def _torch() -> Any:
    import torch

    return torch


class Bottleneck(_torch().nn.Module):
    """``delta(z) = up(relu(down(z)))`` on the channel axis (last for tokens [B, N, C], 1 for maps [B, C, H, W])."""

    def __init__(self, d_in: int, d_out: int, r: int, scaling: float, learned: bool) -> None:
        torch = _torch()
        super().__init__()
        self.down = torch.nn.Linear(d_in, r)
        self.up = torch.nn.Linear(r, d_out)
        torch.nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)
        s = torch.tensor(float(scaling))
        if learned:
            self.scale = torch.nn.Parameter(s)
        else:
            self.register_buffer("scale", s)

    def forward(self, z: Any) -> Any:
        torch = _torch()
        channels_first = z.ndim == 4
        if channels_first:
            z = z.movedim(1, -1)
        out = self.up(torch.relu(self.down(z))) * self.scale
        return out.movedim(-1, 1) if channels_first else out


class Adapted(_torch().nn.Module):
    """A module with a bottleneck adapter: sequential ``f(x) + s delta(f(x))`` or parallel ``f(x) + s delta(x)``."""

    def __init__(self, inner: Any, adapter: Bottleneck, insertion: str) -> None:
        super().__init__()
        self.inner, self.adapter, self.insertion = inner, adapter, insertion

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(x, *args, **kwargs)
        z = out if self.insertion == "sequential" else x
        if z.ndim == 4 and z.shape[-2:] != out.shape[-2:]:  # a strided CNN block: read at the output's resolution
            z = _torch().nn.functional.adaptive_avg_pool2d(z, out.shape[-2:])
        return out + self.adapter(z)


class ResidualAdapted(_torch().nn.Module):
    """Parallel adapter on a transformers output block ``LayerNorm(dropout(dense(h)) + r)`` (BERT's ``SelfOutput`` and
    ``Output``), whose residual ``r`` is the sub-layer's input: the adapter reads ``r`` and its ``s * delta(r)`` joins
    the sub-layer's output before the residual sum and LayerNorm, which equals passing ``r + s * delta(r)``."""

    insertion = "parallel"

    def __init__(self, inner: Any, adapter: Bottleneck) -> None:
        super().__init__()
        self.inner, self.adapter = inner, adapter

    def forward(self, hidden_states: Any, input_tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return self.inner(hidden_states, input_tensor + self.adapter(input_tensor), *args, **kwargs)


class PrefixSelfAttention(_torch().nn.Module):
    """Prefix tuning on a transformers BERT-style self-attention (``query``/``key``/``value``): ``prefix`` learned
    keys and values per head join the tokens' own; padding masks (boolean or additive) are extended to cover them."""

    def __init__(self, attn: Any, prefix: int) -> None:
        torch = _torch()
        super().__init__()
        self.attn = attn
        h, d = attn.num_attention_heads, attn.attention_head_size
        self.prefix_k = torch.nn.Parameter(torch.randn(h, prefix, d) * 0.02)
        self.prefix_v = torch.nn.Parameter(torch.zeros(h, prefix, d))

    def forward(self, hidden_states: Any, attention_mask: Any = None, *args: Any, **kwargs: Any) -> Any:
        torch = _torch()
        a = self.attn
        b, n, _ = hidden_states.shape
        h, d, p = a.num_attention_heads, a.attention_head_size, self.prefix_k.shape[1]

        def heads(t: Any) -> Any:
            return t.view(b, n, h, d).transpose(1, 2)

        q, k, v = heads(a.query(hidden_states)), heads(a.key(hidden_states)), heads(a.value(hidden_states))
        k = torch.cat([self.prefix_k.unsqueeze(0).expand(b, -1, -1, -1).to(k.dtype), k], dim=2)
        v = torch.cat([self.prefix_v.unsqueeze(0).expand(b, -1, -1, -1).to(v.dtype), v], dim=2)
        mask = attention_mask
        if mask is not None:  # [B, 1, Lq, Lk]: prefixes are always visible
            pad = mask.new_ones if mask.dtype == torch.bool else mask.new_zeros
            mask = torch.cat([pad((*mask.shape[:-1], p)), mask], dim=-1)
        drop = a.dropout.p if self.training else 0.0
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop,
                                                               scale=getattr(a, "scaling", d**-0.5))
        return out.transpose(1, 2).reshape(b, n, h * d), None


class PrefixAttention(_torch().nn.Module):
    """Prefix tuning on a timm ``Attention``: ``prefix`` learned keys and values per head are attended to along with
    the tokens' own (Li & Liang, ACL 2021; in the unified view, a gated parallel adapter on attention)."""

    def __init__(self, attn: Any, prefix: int) -> None:
        torch = _torch()
        super().__init__()
        for a in ("qkv", "num_heads", "head_dim", "proj"):
            if not hasattr(attn, a):
                raise TransferlabError(f"prefix tuning needs a timm-style Attention (qkv, num_heads, head_dim, proj); "
                                       f"{type(attn).__name__} has no {a}")
        self.attn = attn
        h, d = attn.num_heads, attn.head_dim
        self.prefix_k = torch.nn.Parameter(torch.randn(h, prefix, d) * 0.02)
        self.prefix_v = torch.nn.Parameter(torch.zeros(h, prefix, d))

    def forward(self, x: Any, attn_mask: Any = None, **kwargs: Any) -> Any:
        torch = _torch()
        a = self.attn
        if attn_mask is not None:
            raise TransferlabError("prefix tuning does not support attention masks yet")
        b, n, _ = x.shape
        qkv = a.qkv(x).reshape(b, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        k = torch.cat([self.prefix_k.unsqueeze(0).expand(b, -1, -1, -1).to(k.dtype), k], dim=2)
        v = torch.cat([self.prefix_v.unsqueeze(0).expand(b, -1, -1, -1).to(v.dtype), v], dim=2)
        drop = a.attn_drop.p if self.training and hasattr(a, "attn_drop") else 0.0
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        out = out.transpose(1, 2).reshape(b, n, a.num_heads * a.head_dim)
        out = a.norm(out) if hasattr(a, "norm") else out
        if getattr(a, "gate", None) is not None:
            out = out * a.gate(x).sigmoid()
        out = a.proj(out)
        return a.proj_drop(out) if hasattr(a, "proj_drop") else out


def _targets(model: Any, placement: str) -> tuple[list[str], list[str]]:
    """(names of attention modules, names of modules to wrap with bottlenecks) for a placement."""
    torch = _torch()
    named = dict(model.named_modules())
    attn = [n for n, m in named.items() if n.startswith("blocks.") and n.endswith(".attn")]
    ffn = [n for n, m in named.items() if n.startswith("blocks.") and n.endswith(".mlp")]
    if placement == "auto":
        placement = "ffn" if ffn else "block"
    if placement in ("attn", "ffn", "both") and not (attn and ffn):
        raise TransferlabError(f"placement {placement!r} needs attention blocks; {type(model).__name__} has none: "
                               "use placement='block'")
    if placement == "block":
        # blocks: composite modules held in a Sequential/ModuleList (blocks.0.1, layer1.0, stages.0.blocks.2); the
        # innermost ones, so a stage that holds blocks is not itself a block
        containers = (torch.nn.Sequential, torch.nn.ModuleList)
        cands = [n for n, m in named.items() if n and n.split(".")[-1].isdigit() and any(True for _ in m.children())
                 and isinstance(named[n.rpartition(".")[0]] if "." in n else model, containers)]
        leaves = [n for n in cands if not any(o.startswith(n + ".") for o in cands)]
        if not leaves:
            raise TransferlabError(f"found no blocks in {type(model).__name__} to adapt")
        return attn, leaves
    return attn, {"attn": attn, "ffn": ffn, "both": attn + ffn}[placement]


def _text_targets(model: Any, placement: str, insertion: str) -> tuple[list[str], list[str]]:
    """(self-attention modules, modules to wrap) of a transformers encoder (BERT family): attention output blocks
    ``*.attention.output`` and FFN output blocks ``*.layer.N.output``, each ``LayerNorm(dense(h) + residual)``."""
    named = dict(model.named_modules())

    def residual_block(n: str) -> bool:
        m = named[n]
        return hasattr(m, "dense") and hasattr(m, "LayerNorm")

    attn = [n for n in named if n.endswith(".attention.output") and residual_block(n)]
    ffn = [n for n in named if re.search(r"\.layers?\.\d+\.output$", n) and residual_block(n)]
    selfattn = [n for n in named if n.endswith(".attention.self")
                and all(hasattr(named[n], a) for a in ("query", "key", "value", "num_attention_heads"))]
    if not (attn and ffn):
        raise TransferlabError(f"adapters on text models need a BERT-style encoder (attention.output / layer.N.output "
                               f"blocks); {type(getattr(model, 'encoder', model)).__name__} has none")
    placement = "ffn" if placement == "auto" else placement
    if placement == "block":
        raise TransferlabError("placement 'block' is for CNNs; text models take 'attn', 'ffn' or 'both'")
    wrap = {"attn": attn, "ffn": ffn, "both": attn + ffn}[placement]
    # sequential adapters act on the block's projection (before the residual and LayerNorm, as in Houlsby et al.)
    return selfattn, [n + ".dense" for n in wrap] if insertion == "sequential" else wrap


def _example_input(model: Any, image_size: int) -> Any:
    make = getattr(model, "example_input", None)
    return make() if make is not None else _torch().zeros(1, 3, image_size, image_size)


def _io_shapes(model: Any, names: list[str], image_size: int) -> dict[str, tuple[int, int]]:
    """Channel sizes (input, output) of the named modules, from one dry forward pass."""
    torch = _torch()
    named = dict(model.named_modules())
    shapes: dict[str, tuple[int, int]] = {}
    hooks = []
    for n in names:
        def hook(mod: Any, inp: Any, out: Any, n: str = n) -> None:
            ch = lambda t: t.shape[1] if t.ndim == 4 else t.shape[-1]  # noqa: E731
            shapes[n] = (ch(inp[0]), ch(out))

        hooks.append(named[n].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(_example_input(model, image_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def is_text_model(model: Any) -> bool:
    from ._text import TextClassifier

    return isinstance(model, TextClassifier)


def replace_module_(model: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def inject_adapters_(model: Any, config: AdapterConfig, image_size: int = 64) -> list[Any]:
    """Insert adapters into ``model`` in place; returns the new parameters (everything else is frozen)."""
    for p in model.parameters():
        p.requires_grad_(False)
    text = is_text_model(model)
    attn_names, wrap = (_text_targets(model, config.placement, config.insertion) if text
                        else _targets(model, config.placement))
    if not wrap and not config.prefix:
        raise TransferlabError(f"no module of {type(model).__name__} to adapt with placement {config.placement!r}")
    shapes = _io_shapes(model, wrap, image_size)
    new_params: list[Any] = []
    for n in wrap:
        d_in, d_out = shapes[n]
        residual = text and config.insertion == "parallel"  # reads the block's residual input (hidden size)
        if config.insertion == "sequential" or residual:
            d_in = d_out
        ad = Bottleneck(d_in, d_out, config.r, config.scaling, config.learned_scaling)
        inner = model.get_submodule(n)
        replace_module_(model, n, ResidualAdapted(inner, ad) if residual else Adapted(inner, ad, config.insertion))
        new_params += list(ad.parameters())
    if config.prefix:
        if not attn_names:
            raise TransferlabError(f"prefix tuning needs attention; {type(model).__name__} has none")
        for n in attn_names:
            target = n + ".inner" if n in wrap else n
            pa = (PrefixSelfAttention if text else PrefixAttention)(model.get_submodule(target), config.prefix)
            replace_module_(model, target, pa)
            new_params += [pa.prefix_k, pa.prefix_v]
    return new_params



def _rebuild(net: Any, state: dict[str, Any], structure: dict[str, Any]) -> Any:
    """A saved adapter model's modules, from its card: the same config, injected the same way."""
    inject_adapters_(net, AdapterConfig(**structure.get("config", {})), int(structure.get("image_size") or 64))
    return net


def mam_config(r: int = 16, prefix: int = 16, scaling: float = 4.0) -> AdapterConfig:
    """The MAM adapter (He et al., ICLR 2022): prefix tuning on attention and a parallel FFN adapter scaled by s."""
    return AdapterConfig(r=r, insertion="parallel", placement="ffn", scaling=scaling, prefix=prefix)


def adapters_structure(config: AdapterConfig, image_size: int) -> dict[str, Any]:
    """The card's ``structure`` of a model with these adapters (what :func:`_rebuild` reads)."""
    return {"kind": "adapters", "config": config.model_dump(), "image_size": int(image_size)}


STRUCTURES.register("adapters", summary="unified-view bottleneck adapters and prefixes")(_rebuild)
