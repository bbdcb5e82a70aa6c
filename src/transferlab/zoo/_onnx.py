"""The ONNX text backbone: an exported encoder run with onnxruntime (its output only: ONNX exposes no inner layers
unless exported with them, so ``rank --layers`` ranks its output in every mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._runtime import requested_threads
from ..data import Dataset
from ..errors import ModelError
from ._backbone import Backbone, Batch


class OnnxBackbone(Backbone):
    """An ONNX text encoder taking ``input_ids``/``attention_mask``; features are a 2-D output or the mean-pooled
    3-D one (``output_name`` picks which)."""

    modality = "text"

    def __init__(self, ref: str, path: Path, tokenizer_file: Path, *, weights_id: str, output_name: str | None = None,
                 max_length: int = 256, meta: dict[str, Any] | None = None) -> None:
        self.ref, self.path, self.tokenizer_file = ref, Path(path), Path(tokenizer_file)
        self._weights_id, self.output_name, self.max_length = weights_id, output_name, max_length
        self._meta = dict(meta or {})
        self._sess: Any = None
        self._tok: Any = None

    def identity(self) -> dict[str, Any]:
        return {"ref": self.ref, "weights": self._weights_id, "output": self.output_name,
                "max_length": self.max_length}

    def _load(self) -> None:
        if self._sess is not None:
            return
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelError("onnx: models need the text extra: pip install 'transferlab[text]'") from exc
        opts = ort.SessionOptions()
        if requested_threads():  # the --threads limit, as for torch models
            opts.intra_op_num_threads = requested_threads()
        try:
            self._sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load ONNX model {str(self.path)!r}: {exc}") from None
        self._tok = Tokenizer.from_file(str(self.tokenizer_file))
        self._tok.enable_truncation(self.max_length)
        self._tok.enable_padding(pad_id=self._tok.token_to_id("[PAD]") or 0)
        names = [i.name for i in self._sess.get_inputs()]
        missing = {"input_ids", "attention_mask"} - set(names)
        if missing:
            raise ModelError(f"ONNX model {self.path.name} lacks input(s) {sorted(missing)} (has {names}); "
                             "transferlab feeds input_ids and attention_mask")

    def _batches(self, ds: Dataset, indices: np.ndarray, *, batch_size: int,
                 image_size: int | None) -> Iterator[Batch]:
        self._load()
        wanted = {i.name for i in self._sess.get_inputs()}
        for start in range(0, len(indices), batch_size):
            enc = self._tok.encode_batch([ds.items[i] for i in indices[start:start + batch_size]])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in wanted:
                feeds["token_type_ids"] = np.zeros_like(ids)
            out = self._sess.run([self.output_name] if self.output_name else None, feeds)[0]
            if out.ndim == 3:
                m = mask[..., None].astype(out.dtype)
                out = (out * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            yield Batch(np.asarray(out, dtype=np.float32), None)

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        self._load()
        return np.array([sum(e.attention_mask) for e in self._tok.encode_batch(list(texts))], dtype=np.int64)
