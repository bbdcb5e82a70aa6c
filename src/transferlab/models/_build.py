"""Networks from model references and from recorded architectures; the head; the preprocessing that goes with them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..data import Dataset
from ..errors import TransferlabError


@dataclass
class Built:
    """A network ready to adapt and how to feed it: images (size, mean, std, resize interpolation) or text
    (tokenizer, max_length)."""

    net: Any
    modality: str
    image_size: int | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    tokenizer: Any = None
    max_length: int | None = None
    interpolation: str = "bilinear"

    def tensors(self, ds: Dataset, augment: bool = False) -> Any:
        """``ds`` as a torch dataset of ``(input, label)`` with this network's preprocessing."""
        if self.modality == "text":
            from ._text import TextTensors

            return TextTensors(ds, self.tokenizer, self.max_length or 256)
        from ._inputs import ImageTensors

        return ImageTensors(ds, self.image_size or 224, self.mean, self.std, augment=augment,
                            interpolation=self.interpolation)

    def preprocessing(self) -> dict[str, Any]:
        if self.modality == "text":
            return {"max_length": self.max_length}
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}


def resolve(ref: str, trust_pickle: bool = False) -> Any:
    from ..zoo import resolve_model

    return resolve_model(ref, trust_pickle=trust_pickle)


def adaptable(backbone: Any) -> bool:
    """Whether :func:`build` (and so ``fit``) can adapt ``backbone``: a torch network (timm, transformers,
    sentence-transformers), not a feature extractor (ONNX) or a raw-input baseline."""
    from ..zoo import HFBackbone, SentenceTransformerBackbone, TorchImageBackbone

    return isinstance(backbone, (TorchImageBackbone, HFBackbone, SentenceTransformerBackbone))


def build(backbone: Any, num_classes: int) -> Built:
    """The pretrained network of a zoo ``backbone`` with a fresh ``num_classes`` head (none for 0)."""
    from ..zoo import TorchImageBackbone

    if isinstance(backbone, TorchImageBackbone):
        model = backbone.model
        model.reset_classifier(num_classes)
        return Built(model, "image", backbone.native_size, tuple(backbone.mean), tuple(backbone.std),
                     interpolation=backbone.interpolation)
    if backbone.modality == "text":
        from ._text import build_text_classifier

        net, tok = build_text_classifier(backbone, num_classes)
        return Built(net, "text", tokenizer=tok, max_length=net.architecture["max_length"])
    raise TransferlabError(f"{backbone.ref} cannot be fine-tuned: fit needs a torch model (timm:, hf:, st: or a "
                           "builtin torch model); baselines only extract features")


def pretrained(ref: str, num_classes: int = 0, *, trust_pickle: bool = False) -> Any:
    """The torch model adaptation starts from for ``ref``: the pretrained network with a fresh ``num_classes``
    head (none for 0), parameter names as in the models transferlab saves."""
    return build(resolve(ref, trust_pickle), num_classes).net


def architecture_of(model: Any) -> dict[str, Any]:
    """The record that identifies (and for text models rebuilds) a model's architecture."""
    arch = getattr(model, "architecture", None)  # TextClassifier (also through a peft wrapper)
    if isinstance(arch, dict) and arch:
        return arch
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    name = cfg.get("architecture")
    if not name:
        raise TransferlabError(f"cannot tell the architecture of {type(model).__name__}; fit supports timm and "
                               "transformers models")
    kwargs = getattr(model, "transferlab_timm_kwargs", None)  # models built with non-default shapes (small zoo ViT)
    return {"library": "timm", "name": name, **({"kwargs": dict(kwargs)} if kwargs else {})}


def architecture_key(arch: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree for weights to move between two models (timm: the name; transformers: the shapes)."""
    if arch.get("library") == "transformers":
        c = arch.get("config", {})
        return ("transformers", arch.get("name"), *(c.get(k) for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")))
    return (arch.get("library"), arch.get("name"), json.dumps(arch.get("kwargs", {}), sort_keys=True))


def net_from_architecture(arch: dict[str, Any], num_classes: int) -> Any:
    """An untrained network of the recorded architecture (weights come from a saved state dict)."""
    if arch.get("library") == "timm":
        import timm

        return timm.create_model(arch["name"], pretrained=False, num_classes=num_classes, **arch.get("kwargs", {}))
    if arch.get("library") == "transformers":
        from ._text import text_classifier_from_architecture

        return text_classifier_from_architecture(arch, num_classes)
    raise TransferlabError(f"unsupported architecture library {arch.get('library')!r}")


def head_module_name(model: Any) -> str:
    """The dotted name of the model's classification head (``get_classifier()``)."""
    get = getattr(model, "get_classifier", None)
    if get is None:
        raise TransferlabError(f"{type(model).__name__} has no get_classifier(): transferlab needs a timm-style "
                               "model")
    head = get()
    for name, mod in model.named_modules():
        if mod is head:
            return name
    raise TransferlabError(f"cannot find the classification head of {type(model).__name__}")


def head_prefix(model_or_config: Any) -> str:
    """The dotted name of the classification head (``classifier``, ``head``, ``head.fc``...) of a model, or of the
    model a saved card (dict) describes (built on the meta device: no memory, no weights)."""
    if isinstance(model_or_config, dict):
        import torch

        with torch.device("meta"):
            net = net_from_architecture(model_or_config["architecture"], int(model_or_config.get("num_classes") or 2))
        return head_module_name(net)
    return head_module_name(model_or_config)
