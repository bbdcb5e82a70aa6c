"""Texts as images (issue 34 item 4): the embedding-to-image transformation by hand; rank and fit --as-image."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferlab.models import embedding_images


def test_embedding_images_by_hand():
    # (0.6, 0.8), D = 2: 0.5 + 0.6 * sqrt(2) / 6 = 0.641421 -> floor(256 * .) = 164; 0.5 + 0.8 * sqrt(2) / 6 = 0.688562
    # -> 176; a 2 x 2 square, the 2 cells left mid-grey. (3, 4) is normalised to the same vector.
    want = np.array([[[164, 176], [128, 128]]], dtype=np.uint8)
    np.testing.assert_array_equal(embedding_images(np.array([[0.6, 0.8]])), want)
    np.testing.assert_array_equal(embedding_images(np.array([[3.0, 4.0]])), want)
    # D = 16, a unit vector on the first axis: 0.5 + 4 / 6 > 1 -> clipped to 255; zeros -> 128; 4 x 4
    e = np.zeros((1, 16))
    e[0, 0] = 1.0
    img = embedding_images(e)
    assert img.shape == (1, 4, 4) and img[0, 0, 0] == 255 and (img.reshape(-1)[1:] == 128).all()
    assert embedding_images(np.ones((3, 384))).shape == (3, 20, 20)


@pytest.fixture
def reviews_csv(tmp_path):
    from transferlab.data import load_dataset

    ds = load_dataset("builtin:rotten-tomatoes", "test").stratified_sample(24, seed=0)
    keep = [i for i, c in enumerate(ds.labels) if ds.class_names[c] != "plot"]
    rows = [{"text": ds.items[i], "label": ds.class_names[ds.labels[i]]} for i in keep]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_texts_as_images_are_their_embeddings_images(reviews_csv, tiny_text_ref):
    from transferlab.data import load_dataset
    from transferlab.models import texts_as_images
    from transferlab.zoo import extract_features, resolve_model

    ds = load_dataset(reviews_csv)
    img = texts_as_images(ds, tiny_text_ref)
    assert img.modality == "image" and img.items.shape == (len(ds), 6, 6)  # 32 values: a 6 x 6 square
    np.testing.assert_array_equal(img.labels, ds.labels)
    emb = extract_features(resolve_model(tiny_text_ref), ds).features
    np.testing.assert_array_equal(img.items, embedding_images(emb))


@pytest.mark.slow  # builtin:minilm_l6 embeds the texts
def test_rank_and_fit_take_texts_as_images(reviews_csv, tmp_path, tiny_model_ref):
    from transferlab.cli import main
    from transferlab.data import load_dataset

    ds = load_dataset(reviews_csv)
    assert main(["rank", str(reviews_csv), "--as-image", "--zoo", "builtin:pixels", "--metrics", "knn",
                 "--out", str(tmp_path / "r"), "-q"]) == 0
    ranked = json.loads((tmp_path / "r" / "ranking.json").read_text())
    assert ranked["dataset"]["modality"] == "image" and ranked["dataset"]["size"] == len(ds)
    assert main(["fit", str(reviews_csv), "--as-image", "--model", tiny_model_ref, "--method", "head",
                 "--epochs", "1", "--image-size", "16", "--out", str(tmp_path / "f"), "-q"]) == 0
    card = json.loads((tmp_path / "f" / "transferlab.json").read_text())
    assert card["modality"] == "image" and card["image_size"] == 16
