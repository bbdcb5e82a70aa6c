"""Texts through the vision zoo (issue 34 item 4): builtin:rotten-tomatoes as images of its MiniLM embeddings
(transferlab.models.texts_as_images) ranked and linearly probed with vision models, against MiniLM (and TF-IDF) on the
texts themselves; the same class-stratified training sample, the whole test split.

    OMP_NUM_THREADS=1 timeout 1800 .venv/bin/python benchmarks/bench_as_image.py --limit 1000
"""

from __future__ import annotations

import argparse
import json
import time

VISION = "builtin:efficientnet_lite0,builtin:small_resnet_textures,builtin:small_convnext_textures,builtin:pixels"
TEXT = "builtin:minilm_l6,builtin:tfidf"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--vision", default=VISION)
    p.add_argument("--text", default=TEXT)
    p.add_argument("--probe", default="builtin:efficientnet_lite0,builtin:small_resnet_textures")
    args = p.parse_args()
    from transferlab.data import load_dataset
    from transferlab.fit import fit
    from transferlab.models import texts_as_images
    from transferlab.rank import rank

    train = load_dataset("builtin:rotten-tomatoes", "train").stratified_sample(args.limit, seed=0)
    test = load_dataset("builtin:rotten-tomatoes", "test")
    img_train, img_test = texts_as_images(train), texts_as_images(test)
    out: dict = {"limit": args.limit, "rank": {}, "linear_probe": {}}
    for name, ds, zoo in (("as_image", img_train, args.vision), ("text", train, args.text)):
        r = rank(ds, zoo.split(","), metrics="logme,knn")
        out["rank"][name] = [{"model": m.name, **m.scores} for m in r.models]
        print(json.dumps({name: out["rank"][name]}, default=float), flush=True)
    probes = [(m, img_train, img_test) for m in args.probe.split(",")] + [("builtin:minilm_l6", train, test)]
    for model, tr, te in probes:
        t0 = time.perf_counter()
        acc = fit(tr, model, "linear_probe", test=te).metrics["test_accuracy"]
        out["linear_probe"][model + (" (as image)" if tr is img_train else " (text)")] = {
            "test_accuracy": acc, "seconds": time.perf_counter() - t0}
        print(json.dumps({model: acc}), flush=True)
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
