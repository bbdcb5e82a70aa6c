"""Model zoo: references -> backbones -> cached pooled features."""

from ._backbone import Backbone, HFBackbone, SentenceTransformerBackbone, TorchImageBackbone, torch_threads
from ._cache import FeatureCache, cache_key, default_cache_dir
from ._features import Features, extract_features
from ._images import INTERPOLATIONS, eval_transform, interpolation_mode, read_image
from ._layers import LAYER_MODES, check_layers
from ._sources import (
    BUILTIN_MODELS,
    MODEL_SOURCES,
    PICKLE_SUFFIXES,
    check_pickle,
    list_builtin_models,
    local_weights_id,
    resolve_model,
    weight_kind,
)
from ._zoo import Zoo, ZooModel, list_builtin_zoos, load_zoo

__all__ = [
    "Backbone", "HFBackbone", "SentenceTransformerBackbone", "TorchImageBackbone", "Features", "FeatureCache", "Zoo", "ZooModel", "BUILTIN_MODELS", "MODEL_SOURCES", "PICKLE_SUFFIXES", "check_pickle", "weight_kind",
    "LAYER_MODES", "check_layers", "cache_key", "default_cache_dir", "local_weights_id", "torch_threads", "extract_features", "read_image", "eval_transform", "INTERPOLATIONS", "interpolation_mode", "list_builtin_models", "list_builtin_zoos", "load_zoo", "resolve_model",
]
