"""Backbones: a model reference resolved to something that turns a dataset into pooled features.

A backbone knows its *identity* (model reference, weights hash, preprocessing) without loading any weights, so a
cached feature matrix can be found without touching the model; weights load lazily on the first batch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import apply_thread_limit, requested_threads, torch_threads  # noqa: F401 (zoo re-exports)
from ..data import Dataset
from ..errors import ModelError
from ._hub import hub_hint, hub_offline

log = logging.getLogger(__name__)


@dataclass
class Batch:
    features: np.ndarray  # [B, D] float32 (all layers: every layer's pooled features side by side)
    source_probs: np.ndarray | None  # [B, Cs] float32 or None
    layer_dims: tuple[int, ...] | None = None  # all layers: each one's width, in order (the last: the output); else None


def hash_files(paths: list[Path], root: Path | None = None) -> str:
    """SHA-256 over the contents of weight files: a copy elsewhere, or under another name, hashes the same.

    With ``root`` (a model directory), each file's path relative to it is part of the hash too.
    """
    h = hashlib.sha256()
    for p in sorted(paths):
        if root is not None:
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


class Backbone:
    """Base class. Subclasses set ``modality`` and implement ``identity`` and ``_batches``.

    ``modality`` is the dataset modality the backbone accepts ("image", "text"), or "any".
    """

    ref: str = ""
    modality: str = "any"
    #: whether the features depend on the whole dataset (PCA baselines): then they are computed in one go
    dataset_level: bool = False

    def identity(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def reweighted(self, weights: str) -> None:
        """The network now holds weights other than its reference's (``fit --init`` loaded an earlier fit into it):
        its identity, and so the cache key of every feature extracted from it from now on, names them too (else
        they would be cached, and later read by ``rank``, as the pretrained model's features)."""
        self._weights_id = f"{getattr(self, '_weights_id', '')}+{weights}"

    def preprocessing(self, image_size: int | None) -> dict[str, Any]:
        return {}

    def check_dataset(self, ds: Dataset) -> None:
        if self.modality != "any" and ds.modality != self.modality:
            raise ModelError(
                f"model {self.ref!r} takes {self.modality} inputs but dataset {ds.name!r} is {ds.modality}: pick a "
                f"{ds.modality} model (see `transferlab zoo list builtin:{'text' if ds.modality == 'text' else 'vision'}`)"
            )

    def batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int, image_size: int | None,
                all_layers: bool = False) -> Iterator[Batch]:
        """Features for ``ds[indices]`` in batches of ``batch_size`` (in order). ``all_layers``: every layer's pooled
        features side by side (:mod:`transferlab.zoo._layers`; ``Batch.layer_dims``); one layer, the output, where
        the backbone has no inner layers to read."""
        apply_thread_limit()
        if all_layers:
            return self._layer_batches(ds, indices, batch_size=batch_size, image_size=image_size)
        return self._batches(ds, indices, batch_size=batch_size, image_size=image_size)

    def _layer_batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                       image_size: int | None) -> Iterator[Batch]:
        return self._batches(ds, indices, batch_size=batch_size, image_size=image_size)

    def _batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                 image_size: int | None) -> Iterator[Batch]:  # pragma: no cover - abstract
        raise NotImplementedError

    def token_lengths(self, texts: list[str]) -> np.ndarray | None:
        """Text models: each text's length in tokens after truncation (a batch costs its padded length times its
        size); ``None`` where the cost does not follow tokens (images, TF-IDF)."""
        return None

    def metadata(self) -> dict[str, Any]:
        """Facts for the report (parameters, source dataset...), where known without loading."""
        return dict(getattr(self, "_meta", {}))


# ----------------------------------------------------------------------------------------------------- image models
class TorchImageBackbone(Backbone):
    """Any torch image model: ``builder()`` returns ``(module, cfg)``; the module maps an image batch to
    ``(pooled_features, logits_or_None)`` through ``forward_features`` callable ``encode``. ``interpolation``: how
    its inputs are resized (``zoo._images.INTERPOLATIONS``; the model's pretrained config says which); it is part
    of :meth:`preprocessing`, so of the feature cache key.
    """

    modality = "image"

    def __init__(self, ref: str, builder: Callable[[], Any], *, weights_id: str, mean: tuple[float, ...],
                 std: tuple[float, ...], native_size: int, has_head: bool, meta: dict[str, Any] | None = None,
                 interpolation: str = "bilinear") -> None:
        self.ref = ref
        self._builder = builder
        self._weights_id = weights_id
        self.mean, self.std = tuple(mean), tuple(std)
        self.native_size = native_size
        self.has_head = has_head
        self.interpolation = interpolation
        self._meta = dict(meta or {})
        self._model: Any = None

    def identity(self) -> dict[str, Any]:
        return {"ref": self.ref, "weights": self._weights_id, "head": self.has_head}

    def default_size(self, ds: Dataset) -> int:
        """The input size used when none is given: the native size, except for small images (longest side <= 64 px,
        e.g. 28 px Fashion-MNIST): 128 px (or the native size if smaller). Upsampling them 8x to 224 px costs ~3x
        the compute of 128 px for little gain."""
        side = 0
        items = ds.items
        if isinstance(items, np.ndarray):
            side = max(items.shape[1:3]) if items.ndim >= 3 else 0
        else:
            from PIL import Image

            for item in list(items[:16]):
                try:
                    with Image.open(item) as im:
                        side = max(side, *im.size)
                except (OSError, TypeError, ValueError):
                    return self.native_size
        return min(self.native_size, 128) if 0 < side <= 64 else self.native_size

    def preprocessing(self, image_size: int | None) -> dict[str, Any]:
        return {"size": int(image_size or self.native_size), "mean": self.mean, "std": self.std,
                "interpolation": self.interpolation, "resize": "square-uint8", "channels": "rgb"}

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._builder()
            self._model.eval()
            if "params" not in self._meta:
                self._meta["params"] = int(sum(p.numel() for p in self._model.parameters()))
        return self._model

    def encode(self, x: Any) -> tuple[Any, Any]:
        """Pooled features and logits for a preprocessed batch (timm API; override for other models)."""
        m = self.model
        feats = m.forward_head(m.forward_features(x), pre_logits=True)
        logits = m.get_classifier()(feats) if self.has_head else None
        return feats, logits

    #: the network in channels-last memory format: None = on CUDA only (where convolutions gain from it); the features
    #: agree with the contiguous network's to float tolerance (tests/zoo/test_devices.py)
    channels_last: bool | None = None

    def _batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                 image_size: int | None) -> Iterator[Batch]:
        return self._encoded(ds, indices, batch_size, image_size, lambda x: (*self.encode(x), None))

    def _layer_batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                       image_size: int | None) -> Iterator[Batch]:
        from ._layers import image_layers

        timm_encode = type(self).encode is TorchImageBackbone.encode
        return self._encoded(ds, indices, batch_size, image_size,
                             lambda x: image_layers(self.model, x, self.encode, self.has_head, timm_encode))

    def _encoded(self, ds: Dataset, indices: np.ndarray, batch_size: int, image_size: int | None,
                 encode: Callable[[Any], tuple[Any, Any, tuple[int, ...] | None]]) -> Iterator[Batch]:
        import torch

        from .._runtime import autocast, current_device
        from ._images import image_batches

        size = int(image_size or self.native_size)
        dev = current_device()
        model = self.model
        if next(model.parameters()).device != dev:
            model.to(dev)
        fmt = torch.channels_last if (self.channels_last if self.channels_last is not None else dev.type == "cuda") \
            else torch.contiguous_format
        model.to(memory_format=fmt)
        pin = dev.type == "cuda"  # page-locked batches copy to the GPU asynchronously
        with torch.inference_mode(), autocast(dev):
            for x in image_batches(ds, indices, batch_size=batch_size, size=size, mean=self.mean, std=self.std,
                                   interpolation=self.interpolation):
                x = (x.pin_memory() if pin else x).to(dev, non_blocking=pin)
                feats, logits, dims = encode(x)
                probs = (torch.softmax(logits.double(), dim=1).float().cpu().numpy() if logits is not None
                         else None)
                yield Batch(feats.float().cpu().numpy(), probs, dims)


# ------------------------------------------------------------------------------------------------------ text models
def _from_hub(weights_id: str) -> bool:
    """Whether a model loads from the Hugging Face hub (``hub:`` weights); if so, the hub is asked first whether it
    can be reached (no network: the local cache alone, and a missing model fails at once)."""
    if not weights_id.startswith("hub:"):
        return False
    hub_offline()
    return True


class SentenceTransformerBackbone(Backbone):
    modality = "text"

    def __init__(self, ref: str, path_or_id: str, *, weights_id: str, meta: dict[str, Any] | None = None,
                 max_length: int | None = None, safetensors_only: bool = False) -> None:
        self.ref, self.path_or_id, self._weights_id = ref, path_or_id, weights_id
        self._meta = dict(meta or {})
        self.max_length = max_length
        self._safetensors_only = safetensors_only
        self._model: Any = None

    def identity(self) -> dict[str, Any]:
        return {"ref": self.ref, "weights": self._weights_id, "max_length": self.max_length}

    def _load(self) -> Any:
        from .._runtime import current_device

        if self._model is not None and self._model.device != current_device():
            self._model.to(current_device())
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ModelError(
                    "st: models need the text extra: pip install 'transferlab[text]'") from exc
            hub = _from_hub(self._weights_id)
            try:
                kw = {"model_kwargs": {"use_safetensors": True}} if self._safetensors_only else {}
                self._model = SentenceTransformer(self.path_or_id, device=str(current_device()), **kw)
            except OSError as exc:
                raise ModelError(
                    f"cannot load sentence-transformers model {self.path_or_id!r} ({str(exc).splitlines()[0]}); "
                    + (hub_hint() if hub else "the directory must hold a sentence-transformers model")
                ) from None
            if self.max_length:
                self._model.max_seq_length = self.max_length
            self._meta.setdefault("params", int(sum(p.numel() for p in self._model.parameters())))
        return self._model

    def _batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                 image_size: int | None) -> Iterator[Batch]:
        from .._runtime import autocast

        model = self._load()
        with autocast(model.device):
            for start in range(0, len(indices), batch_size):
                texts = [ds.items[i] for i in indices[start:start + batch_size]]
                emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
                yield Batch(np.asarray(emb, dtype=np.float32), None)

    def _layer_batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                       image_size: int | None) -> Iterator[Batch]:
        import torch

        from .._runtime import autocast
        from ._layers import sentence_transformer_layers

        model = self._load()
        with torch.inference_mode(), autocast(model.device):
            for start in range(0, len(indices), batch_size):
                layers = sentence_transformer_layers(model, [ds.items[i] for i in indices[start:start + batch_size]],
                                                     model.device)
                yield Batch(torch.cat([t.float() for t in layers], 1).cpu().numpy(), None,
                            tuple(int(t.shape[1]) for t in layers))

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        enc = model.tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)["input_ids"]
        return np.array([len(e) for e in enc], dtype=np.int64)


class HFBackbone(Backbone):
    """A transformers encoder, mean-pooled over non-padding tokens."""

    modality = "text"

    def __init__(self, ref: str, path_or_id: str, *, weights_id: str, meta: dict[str, Any] | None = None,
                 max_length: int = 256, model_builder: Callable[[], Any] | None = None,
                 tokenizer_path: str | None = None, safetensors_only: bool = False) -> None:
        self.ref, self.path_or_id, self._weights_id = ref, path_or_id, weights_id
        self._safetensors_only = safetensors_only
        self.max_length = max_length
        self._meta = dict(meta or {})
        self._builder = model_builder
        self._tokenizer_path = tokenizer_path or path_or_id
        self._model: Any = None
        self._tok: Any = None

    def identity(self) -> dict[str, Any]:
        return {"ref": self.ref, "weights": self._weights_id, "max_length": self.max_length, "pool": "mean"}

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise ModelError("hf: models need the text extra: pip install 'transferlab[text]'") from exc
        hub = _from_hub(self._weights_id)
        try:
            self._tok = AutoTokenizer.from_pretrained(self._tokenizer_path)
            kw = {"use_safetensors": True} if self._safetensors_only else {}
            self._model = self._builder() if self._builder else AutoModel.from_pretrained(self.path_or_id, **kw)
        except OSError as exc:
            raise ModelError(
                f"cannot load transformers model {self.path_or_id!r} ({str(exc).splitlines()[0]}); "
                + (hub_hint() if hub else "the directory must hold a transformers model (config.json, weights)")
            ) from None
        self._model.eval()
        self._meta.setdefault("params", int(sum(p.numel() for p in self._model.parameters())))

    def _batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                 image_size: int | None) -> Iterator[Batch]:
        return self._pooled(ds, indices, batch_size, all_layers=False)

    def _layer_batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                       image_size: int | None) -> Iterator[Batch]:
        return self._pooled(ds, indices, batch_size, all_layers=True)

    def _pooled(self, ds: Dataset, indices: np.ndarray, batch_size: int, all_layers: bool) -> Iterator[Batch]:
        """Mean-pooled output (or, ``all_layers``, every hidden layer after the embeddings, each mean-pooled)."""
        import torch

        from .._runtime import autocast, current_device
        from ._layers import masked_mean

        self._load()
        dev = current_device()
        if next(self._model.parameters()).device != dev:
            self._model.to(dev)
        with torch.inference_mode(), autocast(dev):
            for start in range(0, len(indices), batch_size):
                texts = [ds.items[i] for i in indices[start:start + batch_size]]
                enc = self._tok(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(dev)
                out = self._model(**enc, output_hidden_states=all_layers)
                states = out.hidden_states[1:] if all_layers else (out.last_hidden_state,)
                pooled = [masked_mean(h, enc["attention_mask"]) for h in states]
                yield Batch(torch.cat(pooled, 1).cpu().numpy(), None,
                            tuple(int(p.shape[1]) for p in pooled) if all_layers else None)

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        self._load()
        enc = self._tok(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return np.array([len(e) for e in enc], dtype=np.int64)
