"""Why ``prototype`` (SimpleCIL) trails on the built-in 4-task stream (issue 31): the frozen backbone's features of
each task, extracted by the zoo (not by ``continual``), scored by a NumPy nearest-class-mean classifier by cosine
(what SimpleCIL predicts) and by a logistic regression on the same features (what a trained linear head could
reach). The same samples as ``bench continual``'s defaults: 500 class-stratified training and test examples per task
(seed 0), 32 px.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual_ncm.py [--model builtin:small_resnet_shapes] \
        [--image-size 32]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression

from transferlab.data import load_dataset
from transferlab.zoo import extract_features, resolve_model

TASKS = ("builtin:fashion-mnist", "builtin:digits", "builtin:shapes", "builtin:textures")


def scores(model: str, ref: str, limit: int = 500, image_size: int = 32) -> tuple[float, float, int]:
    """Nearest class mean by cosine and logistic-regression test accuracy of ``ref`` on ``model``'s features."""
    bb = resolve_model(model)
    tr, te = load_dataset(ref, "train"), load_dataset(ref, "test")
    tr = tr.stratified_sample(limit, seed=0) if len(tr) > limit else tr
    te = te.stratified_sample(limit, seed=0) if len(te) > limit else te
    ftr = extract_features(bb, tr, image_size=image_size).features.astype(np.float64)
    fte = extract_features(bb, te, image_size=image_size).features.astype(np.float64)
    ytr, yte = np.asarray(tr.labels), np.asarray(te.labels)
    protos = np.stack([ftr[ytr == c].mean(0) for c in range(tr.num_classes)])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    ncm = float(np.mean((fte @ protos.T).argmax(1) == yte))
    linear = float(LogisticRegression(max_iter=2000).fit(ftr, ytr).score(fte, yte))
    return ncm, linear, ftr.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:small_resnet_shapes")
    ap.add_argument("--image-size", type=int, default=32)
    a = ap.parse_args()
    print("| task | nearest class mean (cosine) | logistic regression | feature width |\n|---|---|---|---|")
    rows = [(ref, *scores(a.model, ref, image_size=a.image_size)) for ref in TASKS]
    for ref, ncm, lin, d in rows:
        print(f"| {ref} | {ncm:.3f} | {lin:.3f} | {d} |")
    print(f"| mean | {np.mean([r[1] for r in rows]):.3f} | {np.mean([r[2] for r in rows]):.3f} | |")


if __name__ == "__main__":
    main()
