"""Datasets: one :class:`Dataset` abstraction and loaders for folders, CSV/JSONL, NPZ and built-in sets; data without
labels (to predict) as :class:`Inputs`."""

from ._dataset import GROUPS, Dataset, check_rankable, item_digests, split_validation, validation_indices
from ._loaders import BUILTIN_DATASETS, list_builtin_datasets, load_dataset, train_and_test
from ._manifest import MANIFEST, manifest_dict
from ._pairs import PAIR_SEP, accuracy_at_k, from_pairs, pair_texts, positive_class
from ._quality import QUALITY, training_fingerprint
from ._unlabelled import Inputs, load_inputs

__all__ = ["Dataset", "Inputs", "load_dataset", "load_inputs", "list_builtin_datasets", "check_rankable",
           "split_validation", "train_and_test", "BUILTIN_DATASETS", "MANIFEST", "manifest_dict",
           "validation_indices", "item_digests", "from_pairs", "pair_texts", "accuracy_at_k", "PAIR_SEP",
           "QUALITY", "GROUPS", "positive_class", "training_fingerprint"]
