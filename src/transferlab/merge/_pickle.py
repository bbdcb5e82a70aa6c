"""A pickle checkpoint's state dict, loaded only when the user trusts it (loading a pickle can run code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TransferlabError


def pickle_state(path: Path, label: str, trust_pickle: bool) -> dict[str, Any]:
    if not trust_pickle:
        raise TransferlabError(f"{label}: {path.name} is a pickle checkpoint; loading one can run arbitrary code. "
                               "Convert it to safetensors, or pass --trust-pickle (trust_pickle=True) if you trust "
                               "its origin")
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    for k in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise TransferlabError(f"{label}: {path} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)
