"""Sentence pairs end to end (issue 34 item 5): rank the text zoo on builtin:rotten-tomatoes-pairs (the joint
representation [u, v, |u - v|, u * v]; each bi-encoder's zero-shot cosine accuracy@k), then fit a pair classifier
(a cross-encoder: the two texts joined by [SEP]) and score it on the test split's queries (accuracy@1/3 of 5
candidates, chance 0.2 / 0.6).

    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_pairs.py --method lora --epochs 3

``--probe``: why the pair fits score below the zero-shot bi-encoder, on frozen features of ``--model`` (cached by
the zoo), seeds ``--seeds``: a logistic regression (transferlab's one probe, the converged C = 1 solution fit's
``linear_probe`` trains) on the joined pair's embedding (the cross-encoder's input, frozen) and on
``[u, v, |u - v|, u * v]``; and a linear head on ``[u, v, |u - v|, u * v]`` trained through the one loop
(``--probe-epochs``, ``--lr`` default 1e-3, AdamW, batch 32) from a random initialisation and from the cosine: the
``u * v`` block of the match class's weights set to ``s = 10`` and its bias to ``-s t``, ``t`` the training cosines'
quantile at the share of non-matches, so the head starts as the zero-shot retrieval (for L2-normalised embeddings,
as MiniLM's sentence-transformers pooling gives, ``sum(u * v)`` is the cosine).

    OMP_NUM_THREADS=1 timeout 1800 .venv/bin/python benchmarks/bench_pairs.py --probe --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--zoo", default="builtin:text")
    p.add_argument("--model", default="builtin:minilm_l6")
    p.add_argument("--method", default="lora")
    p.add_argument("--epochs", type=int, default=3, help="0: rank only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="default: the method's")
    p.add_argument("--probe", action="store_true", help="frozen-feature heads instead of rank + fit (see above)")
    p.add_argument("--probe-epochs", type=int, default=30)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    if args.probe:
        probe(args)
        return
    from transferlab.data import accuracy_at_k, load_dataset
    from transferlab.fit import fit
    from transferlab.models import predict
    from transferlab.rank import rank

    t0 = time.perf_counter()
    r = rank("builtin:rotten-tomatoes-pairs", args.zoo, metrics="logme,knn,leep,nleep")
    rows = [{"model": m.name, "consensus_rank": m.consensus_rank, **{k: v for k, v in m.scores.items()},
             "zero_shot": m.metadata.get("retrieval")} for m in r.models]
    t1 = time.perf_counter()
    print(json.dumps({"rank": rows, "rank_seconds": t1 - t0}, default=float), flush=True)
    if args.epochs == 0:
        return
    test = load_dataset("builtin:rotten-tomatoes-pairs", "test")
    with tempfile.TemporaryDirectory() as d:
        f = fit("builtin:rotten-tomatoes-pairs", args.model, args.method, epochs=args.epochs, seed=args.seed, lr=args.lr,
                out=f"{d}/m")
        _, probs, _ = predict(f"{d}/m", test)
    out = {"fit": {"model": args.model, "method": args.method, "epochs": args.epochs, "lr": args.lr,
                   "test_accuracy": f.metrics.get("test_accuracy"), "retrieval": accuracy_at_k(test, probs),
                   "seconds": time.perf_counter() - t1}}
    print(json.dumps(out, indent=1, default=float))


def _features(ref: str, split: str) -> tuple[object, object, object]:
    """(the split, its [u, v, |u - v|, u * v] features, its joined pairs' embeddings), through the feature cache."""
    from transferlab.data import load_dataset
    from transferlab.rank._pairs import PairBackbone
    from transferlab.zoo import FeatureCache, default_cache_dir, extract_features, resolve_model

    ds, bb, cache = load_dataset("builtin:rotten-tomatoes-pairs", split), resolve_model(ref), FeatureCache(
        default_cache_dir())
    return (ds, extract_features(PairBackbone(bb), ds, cache=cache).features,
            extract_features(bb, ds, cache=cache).features)


def _cosine(f):
    import numpy as np

    d = f.shape[1] // 4
    u, v = f[:, :d].astype(np.float64), f[:, d:2 * d].astype(np.float64)
    return (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)


def _loop_head(train, f_tr, f_te, init: str, seed: int, epochs: int, lr: float):
    """A linear head on the pair features through the one loop; its match probabilities on ``f_te``."""
    import numpy as np
    import torch

    from transferlab.data._pairs import positive_class
    from transferlab.train import Supervised, TrainConfig, seed_everything
    from transferlab.train import train as train_loop

    seed_everything(seed)
    head = torch.nn.Linear(f_tr.shape[1], 2)
    pos, d = positive_class(train), f_tr.shape[1] // 4
    if init == "cosine":
        t = float(np.quantile(_cosine(f_tr), 1 - float(np.mean(train.labels == pos))))
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.weight[pos, 3 * d:] = 10.0
            head.bias[pos] = -10.0 * t
    data = list(zip(torch.from_numpy(np.asarray(f_tr, dtype=np.float32)), train.labels.tolist(), strict=True))
    train_loop({"model": head}, Supervised(options={"pairs_probe": init}), data,
               TrainConfig(epochs=epochs, lr=lr, batch_size=32, seed=seed))
    with torch.no_grad():
        return torch.softmax(head.eval()(torch.from_numpy(np.asarray(f_te, dtype=np.float32))), 1).numpy()


def probe(args) -> None:
    import numpy as np

    from transferlab.data import accuracy_at_k
    from transferlab.train import logistic_probe

    t0 = time.perf_counter()
    (train, j_tr, x_tr), (test, j_te, x_te) = _features(args.model, "train"), _features(args.model, "test")
    print(json.dumps({"features_seconds": time.perf_counter() - t0}), flush=True)

    def scored(name: str, seed: int, probs) -> dict:
        r = accuracy_at_k(test, probs)
        acc = float(np.mean(probs.argmax(1) == test.labels)) if np.ndim(probs) == 2 else None
        return {"head": name, "seed": seed, "acc@1": r["accuracy@1"], "acc@3": r["accuracy@3"], "test_accuracy": acc}

    def logistic(f_tr, f_te, seed):
        w, b = logistic_probe(f_tr, train.labels, 2, seed=seed)
        z = np.asarray(f_te, dtype=np.float64) @ w.T + b
        return np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)

    lr = args.lr or 1e-3
    rows = [scored("zero-shot cosine", 0, _cosine(j_te))]
    for seed in (int(s) for s in args.seeds.split(",")):
        rows += [scored("logistic, joined pair's embedding", seed, logistic(x_tr, x_te, seed)),
                 scored("logistic, [u, v, |u-v|, u*v]", seed, logistic(j_tr, j_te, seed)),
                 scored("loop head, random init", seed, _loop_head(train, j_tr, j_te, "random", seed,
                                                                   args.probe_epochs, lr)),
                 scored("loop head, cosine init", seed, _loop_head(train, j_tr, j_te, "cosine", seed,
                                                                   args.probe_epochs, lr))]
        for r in rows[-4:]:
            print(json.dumps(r), flush=True)
    for name in dict.fromkeys(r["head"] for r in rows):
        got = [r for r in rows if r["head"] == name]
        print(json.dumps({"head": name, "model": args.model, "epochs": args.probe_epochs, "lr": lr, **{
            k: [r[k] for r in got] for k in ("acc@1", "acc@3", "test_accuracy")}}), flush=True)


if __name__ == "__main__":
    main()
