"""``fit --init`` loads an earlier fit into the pretrained network: features extracted from it after that (a
linear probe's) are the init network's, and are cached under a key that says so, never as the pretrained model's
(H12 found rank's cache holding the init network's features under the pretrained key)."""

from __future__ import annotations

import numpy as np

from transferlab.data import load_dataset


def test_a_probe_from_an_init_fit_neither_reads_nor_writes_the_pretrained_features(tiny_model_ref, tmp_path):
    from transferlab.fit import fit
    from transferlab.models import resolve
    from transferlab.zoo import FeatureCache, extract_features

    train = load_dataset("builtin:digits", "train").stratified_sample(40, seed=0)
    fit(train, tiny_model_ref, "finetune", epochs=1, lr=5e-2, image_size=16, out=tmp_path / "a")
    fit(train, tiny_model_ref, "linear_probe", image_size=16, init=tmp_path / "a", out=tmp_path / "b")
    cached = extract_features(resolve(tiny_model_ref), train, image_size=16, cache=FeatureCache()).features
    fresh = extract_features(resolve(tiny_model_ref), train, image_size=16, cache=None).features
    np.testing.assert_array_equal(cached, fresh)  # the pretrained key holds the pretrained model's features
