"""The saved adapted model: a versioned card, networks built from references or recorded architectures, atomic
save, ``load``, ``predict`` / ``evaluate``, the image and text input adapters, and the one inference loop. Every
capability that writes or reads a model (fit, merge, bench, the zoo build) goes through here.

The torch modules (adapters, ScaLearn's scaled sources, the text classifier, the input adapters) are imported on first
use, so ``import transferlab.models`` does not import torch."""

from typing import Any

from ._build import (
    Built,
    adaptable,
    architecture_key,
    architecture_of,
    build,
    head_module_name,
    head_prefix,
    net_from_architecture,
    pretrained,
    resolve,
)
from ._card import CARD_FILE, FORMAT, FolderCard, ModelCard, card_file, interpolation_of, read_card
from ._classifier import (
    Classifier,
    class_order,
    feed_of_card,
    load_classifier,
    model_dir,
)
from ._hf_text import write_hf_files
from ._infer import HeadInputTap, Inference, features_and_probs, infer, predict_logits
from ._outdir import claim_output
from ._output import RunOutput, RunResult
from ._paths import local_reference, peft_base_name, portable, recorded_path, recorded_reference
from ._predict import Predictions
from ._predictor import Predictor
from ._saved import evaluate, load, model_inputs, predict, save_card, save_model, timm_config
from ._structures import STRUCTURES

_LAZY = {
    "Adapted": "_adapters", "AdapterConfig": "_adapters", "Bottleneck": "_adapters", "ResidualAdapted": "_adapters",
    "adapters_structure": "_adapters", "inject_adapters_": "_adapters", "mam_config": "_adapters", "replace_module_": "_adapters",
    "ScaledSources": "_scaled", "scaled_structure": "_scaled",
    "BottleneckHead": "_bottleneck", "bottleneck_structure": "_bottleneck", "install_bottleneck_": "_bottleneck",
    "pooled_dim": "_bottleneck", "ProjectionHead": "_projection", "EaseHead": "_ease",
    "adapter_parameters": "_ease", "inject_task_adapters_": "_ease",
    "TextClassifier": "_text", "TextTensors": "_text", "rename_modules_": "_text", "to_transformers": "_export",
    "legacy_text_state": "_export", "ImageTensors": "_inputs",
    "Coordinator": "_prompter", "install_prompter_": "_prompter", "prompter_structure": "_prompter",
    "inject_petal_": "_petal", "petal_structure": "_petal", "quality_proxy": "_petal",
    "texts_as_images": "_as_image", "embedding_images": "_as_image",
    "Aggregated": "_sla", "sla_aggregate": "_sla", "sla_structure": "_sla",
    "BiEncoder": "_pair_encoder", "bi_encoder": "_pair_encoder", "bi_encoder_structure": "_pair_encoder",
    "init_head_at_cosine_": "_pair_encoder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CARD_FILE", "FORMAT", "Classifier", "HeadInputTap", "STRUCTURES", "Adapted", "AdapterConfig", "Bottleneck", "BottleneckHead", "Built",
    "EaseHead", "adapter_parameters", "inject_task_adapters_",
    "ImageTensors",
    "FolderCard", "ModelCard", "Predictions", "Predictor", "ProjectionHead", "ResidualAdapted", "RunOutput", "RunResult", "ScaledSources", "TextClassifier", "TextTensors", "adaptable", "adapters_structure",
    "architecture_key", "architecture_of", "bottleneck_structure", "build", "card_file", "class_order", "claim_output", "evaluate", "features_and_probs", "infer", "Inference", "feed_of_card", "head_module_name", "head_prefix",
    "inject_adapters_", "install_bottleneck_", "legacy_text_state", "load", "load_classifier", "local_reference", "mam_config", "model_dir", "model_inputs", "net_from_architecture",
    "peft_base_name", "pooled_dim", "portable", "predict", "predict_logits", "pretrained", "read_card", "interpolation_of", "recorded_path",
    "recorded_reference", "rename_modules_", "replace_module_", "resolve", "save_card", "save_model", "scaled_structure", "timm_config",
    "to_transformers", "write_hf_files",
    "Coordinator", "install_prompter_", "prompter_structure", "inject_petal_", "petal_structure", "quality_proxy",
    "texts_as_images", "embedding_images", "Aggregated", "sla_aggregate", "sla_structure",
    "BiEncoder", "bi_encoder", "bi_encoder_structure", "init_head_at_cosine_",
]
