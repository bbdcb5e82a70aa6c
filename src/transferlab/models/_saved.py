"""Saving and loading adapted models, and the one inference loop.

A model directory holds ``transferlab.json`` (the :class:`~transferlab.models.ModelCard`), the weights
(``model.safetensors``: the whole network, or only what a fit trained over the model reference; or peft's
``adapter_model.safetensors`` over it), ``tokenizer/`` for text models and, for merges, ``heads/<task>.safetensors``.
Where the weights are a whole timm network, a timm ``config.json`` beside them lets plain timm open the directory
(``timm.create_model("local-dir:" + DIR, pretrained=True)``). Text models and peft adapters get a ``README.md`` card;
text models also transformers' ``config.json``, ``modeling_transferlab.py`` and their tokenizer at the top level
(``_hf_text``: the folder opens in transformers and peft as it is). Nothing here names a fit method: the card says
how to rebuild.
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
from .._runtime import in_runtime
from .._version import __version__
from ..data import Dataset, Inputs, load_inputs
from ..errors import DataError, ModelError, TransferlabError, few
from ._build import architecture_key, architecture_of, build, head_prefix, net_from_architecture, resolve
from ._card import CARD_FILE, OLD_CARD_FILE, FolderCard, ModelCard, interpolation_of, read_card
from ._paths import local_reference, peft_base_name, with_base
from ._predict import class_probabilities, feed
from ._structures import STRUCTURES

log = logging.getLogger(__name__)
#: timm ``pretrained_cfg`` keys that describe where timm's own weights come from or how they were evaluated, not ours
_TIMM_SOURCE_KEYS = ("url", "file", "hf_hub_id", "hf_hub_filename", "hf_hub_revision", "source", "state_dict",
                     "architecture", "tag", "custom_load", "license", "test_input_size", "test_crop_pct",
                     "min_input_size", "label_names", "label_descriptions")


def save_model(directory: str | Path, net: Any, card: ModelCard | dict[str, Any], tokenizer: Any = None, *,
               base: str | None = None, trust_pickle: bool = False) -> None:
    """Write ``net``'s weights, its card and (text models) its tokenizer into ``directory`` (each file atomically;
    build a whole output with :func:`transferlab._io.atomic_dir`).

    ``card.weights`` says what is written: ``"state_dict"`` the whole network (and, for a plain timm network, timm's
    ``config.json``); ``"peft"`` peft's adapter files, with ``base_model_name_or_path`` naming the base; ``"trained"``
    only the tensors :func:`load` cannot rebuild from the base: ``base`` (default: the card's model reference, its
    path read relative to ``directory``) is built with the card's structure and every tensor it reproduces exactly is
    left out (the trained parameters, the buffers and the head are always written)."""
    out = Path(directory)
    card = card if isinstance(card, ModelCard) else ModelCard.model_validate(card)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:  # text models: predict needs the exact tokenizer, offline
        _save_tokenizer(out, tokenizer)
    if card.weights == "peft":  # peft's own format: PeftModel.from_pretrained(base, out) loads it
        for cfg in net.peft_config.values():
            cfg.base_model_name_or_path = peft_base_name(card.model)
        # no embedding layer is ever adapted here; "auto" would ask the hub about base_model_name_or_path
        net.save_pretrained(str(out), save_embedding_layers=False)
    else:
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        if card.weights == "trained":
            state = _trained_part(net, state, card, base or local_reference(card.model or "", out), trust_pickle)
        _write_weights(out / "model.safetensors", state)
    save_card(out, card)


def _write_weights(path: Path, state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"transferlab_version": __version__})
        normal_permissions(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if type(exc).__name__ == "SafetensorError":  # safetensors' own I/O error: a full disk, most often
            import errno
            import shutil

            from .._io import output_error

            need = sum(t.numel() * t.element_size() for t in state.values())
            if shutil.disk_usage(path.parent).free < need:
                raise output_error(OSError(errno.ENOSPC, "no space left on the device"), path) from None
            from ..errors import OutputError

            raise OutputError(f"cannot write {path}: {exc}") from None
        raise


def save_card(directory: str | Path, card: ModelCard | FolderCard | dict[str, Any]) -> None:
    """Write the card as ``transferlab.json`` and, where ``model.safetensors`` is a whole timm network (no added
    modules), timm's ``config.json`` beside it (:func:`timm_config`); text models get their tokenizer at the top
    level, transformers' ``config.json`` and ``modeling_transferlab.py`` too, and text models and peft adapters a
    ``README.md`` card (``_hf_text.write_hf_files``)."""
    from ._hf_text import write_hf_files

    out = Path(directory)
    raw = card.to_json() if isinstance(card, (ModelCard, FolderCard)) else dict(card)
    write_json_atomic(out / CARD_FILE, raw)
    timm_cfg = timm_config(raw)
    if timm_cfg is not None:
        write_json_atomic(out / OLD_CARD_FILE, timm_cfg)
    write_hf_files(out, raw)


def timm_config(card: dict[str, Any]) -> dict[str, Any] | None:
    """The ``config.json`` timm's hub models have, for a saved model whose ``model.safetensors`` is a whole timm
    network: ``timm.create_model("local-dir:" + DIR, pretrained=True)`` builds it with these weights (shape
    arguments in ``model_args``, preprocessing in ``pretrained_cfg``, class names in ``label_names``). None for
    anything else (peft adapters, trained-only weights, added modules, text models)."""
    arch = card.get("architecture") or {}
    if (arch.get("library") != "timm" or card.get("weights", "state_dict") != "state_dict" or card.get("structure")
            or card.get("modality", "image") != "image" or not card.get("num_classes")):
        return None
    import torch

    c = int(card["num_classes"])
    with torch.device("meta"):  # no memory, no weights: only the defaults and shapes
        net = net_from_architecture(arch, c)
    pc = {k: v for k, v in dict(getattr(net, "pretrained_cfg", None) or {}).items()
          if v is not None and k not in _TIMM_SOURCE_KEYS}
    chans = int((pc.get("input_size") or (3,))[0])
    size = int(card.get("image_size") or (pc.get("input_size") or (3, 224, 224))[-1])
    # transferlab's preprocessing: a square resize to image_size (the card's interpolation), no crop, normalisation
    pc.update(input_size=[chans, size, size], interpolation=interpolation_of(card), crop_pct=1.0, crop_mode="center",
              num_classes=c)
    if card.get("mean") and card.get("std"):
        pc.update(mean=list(card["mean"]), std=list(card["std"]))
    cfg: dict[str, Any] = {"architecture": arch["name"], "num_classes": c,
                           "num_features": int(getattr(net, "num_features", 0) or 0)}
    pool = getattr(net, "global_pool", None)
    if isinstance(pool, str) and pool:
        cfg["global_pool"] = pool
    cfg["label_names"] = list(card.get("class_names") or [])
    cfg["pretrained_cfg"] = pc
    if arch.get("kwargs"):  # shape arguments (the small zoo's ViT at 32 px): timm passes model_args to the model
        cfg["model_args"] = dict(arch["kwargs"])
    return cfg


def _trained_part(net: Any, state: dict[str, Any], card: ModelCard, ref: str, trust_pickle: bool) -> dict[str, Any]:
    """The tensors of ``state`` that :func:`load` cannot rebuild from the base ``ref``: the trained parameters,
    every buffer, the head, and whatever else differs from the base built with the card's structure."""
    import torch

    with torch.random.fork_rng(devices=[]):  # a fresh head and new modules draw from the generator: not the caller's
        rebuilt = _structured(_base_network(card, ref, trust_pickle, "the tensors its fit trained", "the fitted model"),
                              state, card, "the fitted model")
    base = rebuilt.state_dict()
    lacking = [k for k in base if k not in state]
    if lacking:
        raise TransferlabError(f"cannot save only the trained tensors: the base {ref} rebuilt with the card's "
                               f"structure has {lacking[0]}, which the fitted network lacks")
    always = {n for n, p in net.named_parameters() if p.requires_grad} | {n for n, _ in net.named_buffers()}
    h = head_prefix(net)
    keep = {k: v for k, v in state.items()
            if k in always or k == h or k.startswith(h + ".") or k not in base or base[k].shape != v.shape
            or not torch.equal(base[k].to(v.device), v)}
    log.info("saving %d of %d tensors (%.1f%% of the values): the rest is the base %s", len(keep), len(state),
             100 * sum(v.numel() for v in keep.values()) / max(1, sum(v.numel() for v in state.values())), ref)
    return keep


def _base_network(card: ModelCard, ref: str, trust_pickle: bool, what: str, where: str | None = None) -> Any:
    """The pretrained network ``ref`` with a fresh head, as fit built it; a clear error (naming ``where``, the
    model directory) when it cannot be opened."""
    where = where or "the model"
    try:
        net = build(resolve(ref, trust_pickle), card.num_classes).net
    except TransferlabError as exc:
        raise TransferlabError(
            f"{where} holds only {what} over the base model {card.model!r}, and that base cannot be opened here "
            f"{f'as {ref!r} ' if ref != card.model else ''}({str(exc).rstrip('.')}); keep the base where the reference says (a path in it is relative to the "
            "model directory), or name it: transferlab.models.load(DIR, base=REFERENCE_OR_PATH)") from None
    got = architecture_of(net)
    if card.architecture and architecture_key(got) != architecture_key(card.architecture):
        raise TransferlabError(f"the base {ref} is a {got.get('name')}, but {where} was fitted on a "
                               f"{card.architecture.get('name')}: give the base it was fitted on")
    if got.get("library") == "transformers":  # the module names its weights were saved under (older: encoder/head)
        from ._text import module_names, rename_modules_

        rename_modules_(net, module_names(card.architecture))
    return net


def _structured(net: Any, state: dict[str, Any], card: ModelCard, where: Any) -> Any:
    """``net`` with the modules the card's structure names, rebuilt from ``state``."""
    if not card.structure:
        return net
    kind = card.structure.get("kind")
    if kind not in STRUCTURES:
        raise TransferlabError(f"{where}: unknown model structure {kind!r} (known: {', '.join(STRUCTURES)}); "
                               "written by a newer transferlab?")
    return STRUCTURES.get(kind)(net, state, card.structure)


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


def rebuild_task(state: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """A task's network from a ``tsv_compress`` output (``merge``): the written network (the base) with the task's
    low-rank factors added to its matrices (``KEY.lowrank_a @ KEY.lowrank_b``, reshaped) and its whole tensors
    (``KEY.full``: 1-D tensors, normalisation statistics) in place of the base's."""
    import torch

    out = dict(state)
    for k, v in task.items():
        if k.endswith(".lowrank_a"):
            name = k[: -len(".lowrank_a")]
            b, w = task[f"{name}.lowrank_b"], out[name]
            cd = torch.float64 if w.dtype == torch.float64 else torch.float32
            out[name] = (w.to(cd) + (v.to(cd) @ b.to(cd)).reshape(w.shape)).to(w.dtype)
        elif k.endswith(".full"):
            out[k[: -len(".full")]] = v
    return out


def load(model_dir: str | Path, *, head: str | None = None, trust_pickle: bool = False,
         base: str | Path | None = None) -> Any:
    """The adapted model saved by fit (or merge), in eval mode, ready for inference (``model(x) -> logits``).

    ``head``: for a merged model, the task whose classification head to use (default: the first; the card's
    ``heads`` lists them); for a label-augmented (SLA) model, ``"aggregate"`` or ``"single"`` (default: the fit's). ``base``: where the base model is, for a directory that holds only a peft adapter or the
    trained tensors over it (default: the card's model reference; a path in it is relative to ``model_dir``): a
    model reference, or a local path that replaces the reference's own (``timm:NAME@PATH``). ``model.transferlab_config``
    holds the card as a dict (``class_names`` and ``num_classes`` of the chosen head); text models also carry
    ``model.transferlab_tokenizer`` (their input is ``[B, 2, L]`` token ids and attention mask, or a tokenizer's dict
    output)."""

    d = Path(model_dir)
    card = read_card(d)
    peft_format = card.weights == "peft"
    if not (d / ("adapter_model.safetensors" if peft_format else "model.safetensors")).is_file():
        raise TransferlabError(f"{d} has no {'adapter_model' if peft_format else 'model'}.safetensors")
    heads = card.heads or {}
    sla_head, head = _sla_head(card, head)
    task_weights = (card.merge or {}).get("task_weights") or {}  # tsv_compress: each task's model over the base
    if head is None and task_weights:
        head = next(iter(task_weights))  # the written network is the base: the first task's model by default
    if head is not None and head not in heads and head not in task_weights:
        raise TransferlabError(f"{d} has no head {head!r}; "
                               + (f"its heads: {', '.join(heads or task_weights)}" if heads or task_weights
                                  else "it has one head (not a merge)"))
    arch = card.architecture
    if arch.get("library") not in ("timm", "transformers"):
        raise TransferlabError(f"{d}: unsupported architecture library {arch.get('library')!r}")
    tokenizer = None
    if arch["library"] == "transformers":
        from ._text import load_tokenizer, quiet_transformers

        quiet_transformers()
        tokenizer = load_tokenizer(str(d / "tokenizer"))
    over_base = card.weights in ("peft", "trained")
    if over_base and not (card.model or base):
        raise TransferlabError(f"{d}: its weights load over a base model, but the card names none; give it: "
                               "transferlab.models.load(DIR, base=REFERENCE)")
    ref = (with_base(card.model, base) if base is not None else local_reference(card.model or "", d)) \
        if over_base else ""
    what = "a peft adapter" if peft_format else "the tensors its fit trained"
    if peft_format:
        from peft import PeftModel

        _read_weights(d / "adapter_model.safetensors")  # damaged or non-finite: refused before peft reads it
        net = _structured(_base_network(card, ref, trust_pickle, what, str(d)), {}, card, d)  # what they adapted
        net = PeftModel.from_pretrained(net, str(d))  # peft reads adapter_model.safetensors, never a pickle
        check_finite(net.state_dict(), str(d))
    else:
        state = _read_weights(d / "model.safetensors")
        if head in task_weights:
            state = rebuild_task(state, _read_weights(d / task_weights[head]))
        if head is not None and head in heads:  # swap in the chosen task's head
            h = heads[head]
            prefix = card.head or head_prefix(card.to_json())
            state = {k: v for k, v in state.items() if not (k == prefix or k.startswith(prefix + "."))}
            state.update(_read_weights(d / h.file))
            card = card.model_copy(update={"num_classes": h.num_classes, "class_names": h.class_names,
                                           "head": prefix, "selected_head": head})
        trained = card.weights == "trained"
        net = _base_network(card, ref, trust_pickle, what, str(d)) if trained \
            else net_from_architecture(arch, card.num_classes)
        net = _structured(net, state, card, d)
        try:
            if trained:  # the rest is the base's: only tensors the network lacks are an error
                unexpected = net.load_state_dict(state, strict=False).unexpected_keys
                if unexpected:
                    raise RuntimeError(f"unexpected tensor {unexpected[0]}")
            else:
                net.load_state_dict(state)
        except RuntimeError as exc:
            raise TransferlabError(f"{d}: the saved weights do not fit the recorded architecture "
                                   f"({str(exc).splitlines()[0]})") from None
    net.eval()
    if sla_head is not None:
        net.head = sla_head  # "single" without a saved single head: a clear error
    net.transferlab_config = card.to_json()
    net.transferlab_tokenizer = tokenizer
    return net


def _sla_head(card: ModelCard, head: str | None) -> tuple[str | None, str | None]:
    """(an SLA model's prediction asked for: ``"aggregate"`` or ``"single"``, models._sla.Aggregated.head; the
    merged model's head asked for): ``head`` is one or the other."""
    sla = card.structure.get("kind") == "sla" and head in ("aggregate", "single")
    return (head, None) if sla else (None, head)


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


def model_inputs(net: Any, ds: Dataset | Inputs) -> Any:
    """A torch dataset of ``(input, label)`` for ``ds`` (labelled or not) with a loaded model's own preprocessing."""
    return feed(net, ds)


def _model_dir(obj: Any) -> Path:
    """A saved model's directory: a path, or anything with an ``out_dir`` (a ``FitResult`` of ``fit(..., out=)``)."""
    d = getattr(obj, "out_dir", obj)
    if d is None:
        raise TransferlabError("this fit was not saved (fit(..., out=DIR)): there is no directory to load it from")
    return Path(d)


@in_runtime
def predict(model_dir: str | Path | Any, dataset: Dataset | str | Path | Any, *, split: str = "test",
            batch_size: int = 64, head: str | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray, Any]:
    """Class probabilities of a saved model on data: (predicted class index [N], probabilities [N, C], the model's
    card as a dict; its ``class_names`` name the columns). ``dataset``: a labelled dataset (its ``split``) or inputs
    without labels (all of them), as :func:`~transferlab.data.load_inputs` reads them: a reference, a folder of
    images, a CSV/JSONL, arrays, lists of texts or image paths, a DataFrame, a Hugging Face dataset.
    Preprocessing (image size and normalisation, or tokenizer) comes from the model's directory. ``head``: a merged
    model's task head (see :func:`load`); ``progress``: a bar on stderr. :class:`~transferlab.models.Predictor` is
    the scikit-learn-like form (class names, ``predict_proba``)."""
    from .._runtime import current_device

    net = load(_model_dir(model_dir), head=head).to(current_device())
    cfg = net.transferlab_config
    data = load_inputs(dataset, split, modality=cfg.get("modality", "image"))
    p = class_probabilities(net, data, batch_size, progress)
    return p.argmax(1), p, cfg


@in_runtime
def evaluate(model_dir: str | Path | Any, dataset: Dataset | str | Path | Any, *, split: str = "test",
             head: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Accuracy and per-class precision/recall of a saved (or merged: ``head``) model on a labelled dataset split;
    data without labels is a :class:`~transferlab.errors.DataError`."""
    from sklearn.metrics import precision_recall_fscore_support

    ds = load_inputs(dataset, split)  # a reference, a Dataset or data in memory
    if isinstance(ds, Inputs):
        raise DataError(f"evaluate needs labels, and {ds.name} has none ({ds.meta.get('order', 'inputs only')}): "
                        "give labelled data (class sub-folders, a label column: --label-column), or use predict "
                        "for predictions without a score")
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
