"""Saving and loading adapted models, and the one inference loop.

A model directory holds ``config.json`` (the :class:`~transferlab.models.ModelCard`), the weights
(``model.safetensors``, or peft's ``adapter_model.safetensors`` over the model reference), ``tokenizer/`` for text
models and, for merges, ``heads/<task>.safetensors``. Nothing here names a fit method: the card says how to rebuild.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .._io import normal_permissions, write_json_atomic
from .._version import __version__
from ..data import Dataset, load_dataset
from ..errors import ModelError, TransferlabError, few
from ._build import build, head_prefix, net_from_architecture, resolve
from ._card import ModelCard, read_card
from ._structures import STRUCTURES

log = logging.getLogger(__name__)


def save_model(directory: str | Path, net: Any, card: ModelCard | dict[str, Any], tokenizer: Any = None) -> None:
    """Write ``net``'s weights, its card and (text models) its tokenizer into ``directory`` (each file atomically;
    build a whole output with :func:`transferlab._io.atomic_dir`)."""
    from safetensors.torch import save_file

    out = Path(directory)
    card = card if isinstance(card, ModelCard) else ModelCard.model_validate(card)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:  # text models: predict needs the exact tokenizer, offline
        _save_tokenizer(out, tokenizer)
    if card.weights == "peft":  # peft's own format: PeftModel.from_pretrained(base, out) loads it
        net.save_pretrained(str(out))
    else:
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".tmp", dir=out)
        os.close(fd)
        try:
            save_file(state, tmp, metadata={"transferlab_version": __version__})
            normal_permissions(tmp)
            os.replace(tmp, out / "model.safetensors")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    write_json_atomic(out / "config.json", card.to_json())


def _save_tokenizer(out: Path, tokenizer: Any) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=out))
    try:
        tokenizer.save_pretrained(str(tmp))
        normal_permissions(tmp, directory=True)
        shutil.rmtree(out / "tokenizer", ignore_errors=True)
        os.replace(tmp, out / "tokenizer")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(model_dir: str | Path, *, head: str | None = None, trust_pickle: bool = False) -> Any:
    """The adapted model saved by fit (or merge), in eval mode, ready for inference (``model(x) -> logits``).

    ``head``: for a merged model, the task whose classification head to use (default: the first; the card's
    ``heads`` lists them). ``model.transferlab_config`` holds the card as a dict (``class_names`` and ``num_classes``
    of the chosen head); text models also carry ``model.transferlab_tokenizer`` (their input is ``[B, 2, L]`` token
    ids and attention mask, or a tokenizer's dict output)."""

    d = Path(model_dir)
    card = read_card(d)
    peft_format = card.weights == "peft"
    if not (d / ("adapter_model.safetensors" if peft_format else "model.safetensors")).is_file():
        raise TransferlabError(f"{d} has no {'adapter_model' if peft_format else 'model'}.safetensors")
    heads = card.heads or {}
    if head is not None and head not in heads:
        raise TransferlabError(f"{d} has no head {head!r}; "
                               + (f"its heads: {', '.join(heads)}" if heads else "it has one head (not a merge)"))
    arch = card.architecture
    if arch.get("library") not in ("timm", "transformers"):
        raise TransferlabError(f"{d}: unsupported architecture library {arch.get('library')!r}")
    tokenizer = None
    if arch["library"] == "transformers":
        from ._text import load_tokenizer, quiet_transformers

        quiet_transformers()
        tokenizer = load_tokenizer(str(d / "tokenizer"))
    if peft_format:
        from peft import PeftModel

        if not card.model:
            raise TransferlabError(f"{d}: a peft adapter without the model reference it adapts")
        _read_weights(d / "adapter_model.safetensors")  # damaged or non-finite: refused before peft reads it
        # the weights the adapters were trained on (peft reads adapter_model.safetensors, never a pickle beside it)
        net = PeftModel.from_pretrained(build(resolve(card.model, trust_pickle), card.num_classes).net, str(d))
        check_finite(net.state_dict(), str(d))
    else:
        state = _read_weights(d / "model.safetensors")
        if head is not None:  # swap in the chosen task's head
            h = heads[head]
            prefix = card.head or head_prefix(card.to_json())
            state = {k: v for k, v in state.items() if not (k == prefix or k.startswith(prefix + "."))}
            state.update(_read_weights(d / h.file))
            card = card.model_copy(update={"num_classes": h.num_classes, "class_names": h.class_names,
                                           "head": prefix, "selected_head": head})
        net = net_from_architecture(arch, card.num_classes)
        if card.structure:
            kind = card.structure.get("kind")
            if kind not in STRUCTURES:
                raise TransferlabError(f"{d}: unknown model structure {kind!r} (known: {', '.join(STRUCTURES)}); "
                                       "written by a newer transferlab?")
            net = STRUCTURES.get(kind)(net, state, card.structure)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise TransferlabError(f"{d}: the saved weights do not fit the recorded architecture "
                                   f"({str(exc).splitlines()[0]})") from None
    net.eval()
    net.transferlab_config = card.to_json()
    net.transferlab_tokenizer = tokenizer
    return net


def _read_weights(path: Path) -> dict[str, Any]:
    """A safetensors file's tensors; a damaged file (truncated, not safetensors) or non-finite weights are a
    :class:`ModelError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path} is damaged or not a safetensors file ({str(exc).splitlines()[0]}); restore it or "
                         "refit the model") from None
    check_finite(state, str(path))
    return state


def check_finite(state: dict[str, Any], where: str) -> None:
    """Refuse weights with NaN or infinity: a model with them predicts garbage with every appearance of success."""
    import torch

    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{where} holds non-finite weights (NaN or infinity) in {len(bad)} tensor(s), e.g. "
                         f"{', '.join(bad[:3])}; the model is broken: refit it")


def model_inputs(net: Any, ds: Dataset) -> Any:
    """A torch dataset of ``(input, label)`` for ``ds`` with a loaded model's own preprocessing."""
    cfg = net.transferlab_config
    modality = cfg.get("modality", "image")
    if ds.modality != modality:
        raise TransferlabError(f"this model takes {modality} data; {ds.name} holds {ds.modality}")
    if modality == "text":
        from ._text import TextTensors

        return TextTensors(ds, net.transferlab_tokenizer, int(cfg.get("max_length") or 256))
    from ._inputs import ImageTensors

    return ImageTensors(ds, cfg["image_size"], tuple(cfg["mean"]), tuple(cfg["std"]))


def predict_logits(net: Any, data: Any, batch_size: int, on_batch: Any = None) -> np.ndarray:
    """The one inference loop: logits [N, C] in the dataset's order (variable-length inputs run in length-sorted
    batches). ``on_batch(n)`` is called after each batch of ``n`` examples (a progress bar)."""
    import torch

    net.eval()
    n = len(data)
    lengths = getattr(data, "lengths", None)
    order = np.argsort(-np.asarray(lengths), kind="stable") if lengths is not None else np.arange(n)
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    dev = next(net.parameters()).device
    out: np.ndarray | None = None
    with torch.inference_mode():
        for idx, (x, _) in zip(batches, torch.utils.data.DataLoader(data, batch_sampler=batches), strict=True):
            logits = net(x.to(dev)).float().cpu().numpy()
            if not np.isfinite(logits).all():
                first = idx[int(np.flatnonzero(~np.isfinite(logits).all(1))[0])]
                raise ModelError(f"the model's outputs are not finite (NaN or infinity), first at example {first}: "
                                 "its weights or the inputs are broken; no prediction is written")
            if out is None:
                out = np.empty((n, logits.shape[1]), dtype=np.float32)
            out[idx] = logits
            if on_batch is not None:
                on_batch(len(idx))
    if out is None:
        raise TransferlabError("nothing to predict: the dataset is empty")
    return out


def _model_dir(obj: Any) -> Path:
    """A saved model's directory: a path, or anything with an ``out_dir`` (a ``FitResult`` of ``fit(..., out=)``)."""
    d = getattr(obj, "out_dir", obj)
    if d is None:
        raise TransferlabError("this fit was not saved (fit(..., out=DIR)): there is no directory to load it from")
    return Path(d)


def predict(model_dir: str | Path | Any, dataset: Dataset | str | Path | Any, *, split: str = "test",
            batch_size: int = 64, head: str | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray, Any]:
    """Class probabilities of a saved model on a dataset split: (predicted class index [N], probabilities [N, C],
    the model's card as a dict). Preprocessing (image size and normalisation, or tokenizer) comes from the model's
    directory. ``head``: a merged model's task head (see :func:`load`); ``progress``: a bar on stderr."""
    import torch

    from .._progress import progress as progress_bars

    net = load(_model_dir(model_dir), head=head)
    cfg = net.transferlab_config
    ds = load_dataset(dataset, split)  # a reference, a Dataset or data in memory
    with progress_bars(progress) as bars:
        task = bars.add("predicting", len(ds))
        logits = torch.from_numpy(predict_logits(net, model_inputs(net, ds), batch_size,
                                                 on_batch=lambda n: bars.advance(task, n)))
    p = torch.softmax(logits, dim=1).numpy()
    return p.argmax(1), p, cfg


def evaluate(model_dir: str | Path | Any, dataset: Dataset | str | Path | Any, *, split: str = "test",
             head: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Accuracy and per-class precision/recall of a saved (or merged: ``head``) model on a labelled dataset split."""
    from sklearn.metrics import precision_recall_fscore_support

    ds = load_dataset(dataset, split)  # a reference, a Dataset or data in memory
    pred, _, cfg = predict(model_dir, ds, head=head, progress=progress)
    names = cfg["class_names"]
    if list(ds.class_names) != list(names):
        raise TransferlabError(f"the model was trained on other classes ({few(names)}) than {ds.name} has "
                               f"({few(ds.class_names)})")
    prec, rec, f1, support = precision_recall_fscore_support(ds.labels, pred, labels=range(len(names)),
                                                             zero_division=0)
    return {"dataset": ds.name, "split": ds.split, "n": len(ds), "accuracy": float(np.mean(pred == ds.labels)),
            "per_class": {n: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
                          for n, a, b, c, d in zip(names, prec, rec, f1, support, strict=True)}}
