"""Text classifiers for ``fit``: a transformers encoder, pooled like the zoo's backbone, plus a linear head.

:class:`TextClassifier` gives text models the interface the adaptation methods rely on for timm models
(``get_classifier``/``reset_classifier``, ``group_matcher`` for ``partial``, one tensor in and logits out), so every
method runs on both. Its input is one integer tensor ``[B, 2, L]``: token ids and attention mask stacked, padded to a
common length per dataset; each batch is trimmed to its longest sequence before the encoder runs.

Pooling follows the source model: for a sentence-transformers directory, its ``1_Pooling`` (mean or CLS) and
``Normalize`` modules; for a plain transformers encoder, the mean over non-padding tokens (the zoo's ``hf:`` features).

Module names are transformers' own: the encoder under its class's ``base_model_prefix`` (``bert``, ``distilbert``...)
and the head as ``classifier``, as in ``AutoModelForSequenceClassification``; so a fit's ``model.safetensors`` and
its peft adapter keys are the ones transformers and peft look for (``_hf_text``). The architecture record keeps the
names (``modules``); a card without them was written before (``encoder`` and ``head``) and rebuilds with those.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import TransferlabError


def _torch() -> Any:
    import torch

    return torch


#: the module names of a text model saved before transformers' names were used (cards without ``modules``)
LEGACY_NAMES = {"encoder": "encoder", "head": "head"}
#: names a ``base_model_prefix`` cannot take: the classifier's own attributes
_TAKEN = {"classifier", "head", "drop", "pooling", "normalize", "num_features", "num_classes", "architecture",
          "names", "training"}


def transformers_names(encoder: Any) -> dict[str, str]:
    """The module names transformers' sequence-classification model uses around ``encoder``: its class's
    ``base_model_prefix`` (``bert``...; ``encoder`` where it has none) and ``classifier``."""
    prefix = str(getattr(encoder, "base_model_prefix", "") or "")
    if not prefix.isidentifier() or prefix in _TAKEN:
        prefix = "encoder"
    return {"encoder": prefix, "head": "classifier"}


class TextClassifier(_torch().nn.Module):
    """``head(dropout(pool(encoder(ids, mask))))``; ``pool`` is ``mean`` or ``cls``, optionally L2-normalised.

    ``names``: the attribute names of the encoder and the head (default: transformers', :func:`transformers_names`);
    ``encoder`` and ``head`` reach them whatever they are called."""

    def __init__(self, encoder: Any, num_classes: int, pooling: str = "mean", normalize: bool = False,
                 dropout: float = 0.1, names: Mapping[str, str] | None = None) -> None:
        torch = _torch()
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise TransferlabError(f"text pooling must be 'mean' or 'cls', got {pooling!r}")
        if getattr(encoder, "pooler", None) is not None:  # BERT's pooler is unused by mean/CLS pooling: drop it
            encoder.pooler = None
        self.names = dict(names or transformers_names(encoder))
        setattr(self, self.names["encoder"], encoder)
        self.pooling, self.normalize = pooling, normalize
        self.num_features = int(encoder.config.hidden_size)
        self.drop = torch.nn.Dropout(dropout)
        setattr(self, self.names["head"],
                torch.nn.Linear(self.num_features, num_classes) if num_classes else torch.nn.Identity())
        self.num_classes = num_classes
        self.architecture: dict[str, Any] = {}

    @property
    def encoder(self) -> Any:
        return self._modules[self.names["encoder"]]

    @property
    def head(self) -> Any:
        return self._modules[self.names["head"]]

    # timm-style interface used by the methods ------------------------------------------------------------------
    def get_classifier(self) -> Any:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        torch = _torch()
        self.num_classes = num_classes
        setattr(self, self.names["head"],
                torch.nn.Linear(self.num_features, num_classes) if num_classes else torch.nn.Identity())

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Embeddings first, then one group per transformer layer (the head is everything left)."""
        enc = re.escape(self.names["encoder"])
        names = [n for n, _ in self.named_parameters()]
        layer = next((m.group(1) for n in names if (m := re.match(rf"^({enc}\.(?:.*\.)?layers?)\.\d+\.", n))), None)
        if layer is None:
            raise TransferlabError(f"cannot find the layers of {type(self.encoder).__name__}")
        return {"stem": rf"^{enc}\.(?:.*\.)?embeddings", "blocks": rf"^{re.escape(layer)}\.(\d+)"}

    def example_input(self) -> Any:
        """A one-example dummy input (for shape discovery)."""
        torch = _torch()
        return torch.stack([torch.full((1, 8), 100, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], 1)

    # forward ----------------------------------------------------------------------------------------------------
    def forward_features(self, x: Any) -> Any:
        torch = _torch()
        if isinstance(x, Mapping):
            ids, mask = x["input_ids"], x.get("attention_mask")
            mask = torch.ones_like(ids) if mask is None else mask
        else:
            ids, mask = x[:, 0], x[:, 1]
        n = int(mask.sum(1).max().item()) if mask.numel() else 1
        ids, mask = ids[:, :max(n, 1)], mask[:, :max(n, 1)]
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def forward(self, x: Any) -> Any:
        return self.head(self.drop(self.forward_features(x)))


def _st_pooling(path: Path) -> tuple[str, bool]:
    """(pooling, normalize) of a sentence-transformers directory; plain transformers directories: ("mean", False)."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return "mean", False
    pooling, normalize = "mean", False
    for m in modules:
        kind = m.get("type", "")
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling"):
            try:
                pc = json.loads((path / m.get("path", "") / "config.json").read_text())
            except (OSError, ValueError):
                continue
            modes = [k for k, v in pc.items() if k.startswith("pooling_mode_") and v]
            if modes == ["pooling_mode_cls_token"]:
                pooling = "cls"
            elif modes not in ([], ["pooling_mode_mean_tokens"]):
                raise TransferlabError(f"{path}: fit supports mean or CLS pooling, this model pools with {modes}")
    return pooling, normalize


def build_text_classifier(backbone: Any, num_classes: int) -> tuple[TextClassifier, Any]:
    """(classifier with the pretrained encoder, tokenizer) for a zoo text backbone; the classifier's
    ``architecture`` records what :func:`text_classifier_from_architecture` needs to rebuild it."""
    from ..zoo import HFBackbone, SentenceTransformerBackbone

    if isinstance(backbone, SentenceTransformerBackbone):
        path = Path(backbone.path_or_id)
        if not path.is_dir():
            backbone._load()  # hub id: sentence-transformers downloads it; fine-tune its transformer module
            st = backbone._model
            encoder, tok = st[0].auto_model, st[0].tokenizer
            pooling = "cls" if getattr(st[1], "pooling_mode_cls_token", False) else "mean"
            normalize = any(type(m).__name__ == "Normalize" for m in st)
        else:
            encoder, tok = _load_encoder(str(path)), load_tokenizer(str(path))
            pooling, normalize = _st_pooling(path)
        max_length = backbone.max_length
    elif isinstance(backbone, HFBackbone):
        backbone._load()
        encoder, tok = backbone._model, backbone._tok
        pooling, normalize, max_length = "mean", False, backbone.max_length
    else:
        raise TransferlabError(f"{backbone.ref} cannot be fine-tuned: fit needs a torch model (timm:, hf:, st: or a "
                               "builtin torch model); ONNX and baseline models only extract features")
    max_length = int(min(max_length or 128, 512))
    net = TextClassifier(encoder, num_classes, pooling, normalize)
    net.architecture = {"library": "transformers", "name": type(encoder).__name__,
                        "config": _portable_config(encoder.config.to_dict()), "pooling": pooling,
                        "normalize": normalize, "max_length": max_length, "modules": dict(net.names)}
    return net, tok


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _load_encoder(path: str) -> Any:
    from transformers import AutoModel

    quiet_transformers()
    try:
        return AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise TransferlabError(f"cannot load a transformers encoder from {path} ({str(exc).splitlines()[0]})") from None


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise TransferlabError(f"cannot load the tokenizer from {path} ({str(exc).splitlines()[0]})") from None


def text_classifier_from_architecture(arch: dict[str, Any], num_classes: int) -> TextClassifier:
    """An untrained classifier with the recorded architecture (weights come from a saved state dict)."""
    from transformers import AutoConfig, AutoModel

    conf = dict(arch["config"])
    model_type = conf.pop("model_type", None)
    if not model_type:
        raise TransferlabError("the saved text architecture has no model_type")
    encoder = AutoModel.from_config(AutoConfig.for_model(model_type, **conf))
    net = TextClassifier(encoder, num_classes, arch.get("pooling", "mean"), bool(arch.get("normalize")),
                         names=module_names(arch))
    net.architecture = dict(arch)
    return net


def module_names(arch: Mapping[str, Any]) -> dict[str, str]:
    """The encoder's and the head's attribute names a text architecture record says (``LEGACY_NAMES`` when it
    predates them)."""
    names = arch.get("modules")
    return dict(names) if isinstance(names, Mapping) and set(names) == {"encoder", "head"} else dict(LEGACY_NAMES)


def rename_modules_(net: Any, names: Mapping[str, str]) -> Any:
    """``net`` (a :class:`TextClassifier`, not yet wrapped) with its encoder and head under ``names``, in place; its
    architecture record says so. Anything else, or no ``names``, leaves it unchanged."""
    if not isinstance(net, TextClassifier) or not names or dict(names) == net.names:
        return net
    enc, head = net.encoder, net.head
    del net._modules[net.names["encoder"]], net._modules[net.names["head"]]
    net.names = dict(names)
    setattr(net, net.names["encoder"], enc)
    setattr(net, net.names["head"], head)
    net.architecture = {**net.architecture, "modules": dict(names)}
    if names == LEGACY_NAMES:
        net.architecture.pop("modules")
    return net


class TextTensors:
    """Map-style torch dataset over a text :class:`~transferlab.data.Dataset`: ``([2, L] ids and mask, label)``.

    Tokenised once, truncated to ``max_length`` and padded to the longest example."""

    def __init__(self, ds: Dataset, tokenizer: Any, max_length: int) -> None:
        torch = _torch()
        texts = [str(t) for t in ds.items]
        enc = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="np")
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        mask = np.asarray(enc["attention_mask"], dtype=np.int64)
        self.x = torch.from_numpy(np.stack([ids, mask], axis=1))
        self.lengths = mask.sum(1)  # the training loop batches similar lengths together
        self.y = torch.as_tensor(np.asarray(ds.labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        return self.x[i], self.y[i]


def _portable_config(cfg: dict) -> dict:
    """A transformers config as a card keeps it: without ``_name_or_path`` (the folder it was read from, an absolute
    path of the writing machine: site-packages for the built-in models), which rebuilding does not need."""
    return {k: v for k, v in cfg.items() if k != "_name_or_path"}
