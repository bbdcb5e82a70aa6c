"""Sentence pairs end to end (issue 34 item 5): rank the text zoo on builtin:rotten-tomatoes-pairs (the joint
representation [u, v, |u - v|, u * v]; each bi-encoder's zero-shot cosine accuracy@k), then fit a pair classifier
(``--pair-encoder``: a bi-encoder by default, or a cross-encoder reading the two texts joined by [SEP]) and score it on the test split's queries (accuracy@1/3 of 5
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

``--pair-encoder bi|cross``: the pair model fit trains (default: fit's, a bi-encoder on pairs); ``--no-rank``
skips the rank step. ``--init-only``: the bi-encoder fit builds, scored at its initialisation (the head at the
cosine, no training: it finds what the zero-shot cosine finds).

    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_pairs.py --no-rank --pair-encoder bi \
        --method finetune --epochs 2 --lr 5e-5 --seed 0
    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_pairs.py --init-only
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


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
    p.add_argument("--pair-encoder", default=None, choices=["bi", "cross"], help="default: fit's (bi on pairs)")
    p.add_argument("--no-rank", action="store_true", help="fit only")
    p.add_argument("--init-only", action="store_true", help="the bi-encoder at its initialisation (see above)")
    p.add_argument("--save-probs", default=None, help="a folder: the test probabilities go there (init.npy, or "
                   "METHOD-ENCODER-SEED.npy), and a fit is compared query by query with init.npy where it is there")
    args = p.parse_args()
    if args.probe:
        probe(args)
        return
    if args.init_only:
        at_init(args)
        return
    from transferlab.data import accuracy_at_k, load_dataset
    from transferlab.fit import fit
    from transferlab.models import predict
    from transferlab.rank import rank

    t0 = time.perf_counter()
    if not args.no_rank:
        r = rank("builtin:rotten-tomatoes-pairs", args.zoo, metrics="logme,knn,leep,nleep")
        rows = [{"model": m.name, "consensus_rank": m.consensus_rank, **{k: v for k, v in m.scores.items()},
                 "zero_shot": m.metadata.get("retrieval")} for m in r.models]
        print(json.dumps({"rank": rows, "rank_seconds": time.perf_counter() - t0}, default=float), flush=True)
    t1 = time.perf_counter()
    if args.epochs == 0:
        return
    test = load_dataset("builtin:rotten-tomatoes-pairs", "test")
    with tempfile.TemporaryDirectory() as d:
        f = fit("builtin:rotten-tomatoes-pairs", args.model, args.method, epochs=args.epochs, seed=args.seed, lr=args.lr,
                out=f"{d}/m", pair_encoder=args.pair_encoder)
        _, probs, _ = predict(f"{d}/m", test)
    out = {"fit": {"model": args.model, "method": args.method, "epochs": args.epochs, "lr": args.lr,
                   "seed": args.seed, "pair_encoder": f.metrics.get("pair_encoder"),
                   "test_accuracy": f.metrics.get("test_accuracy"), "retrieval": accuracy_at_k(test, probs),
                   **_paired(args, test, probs, f.metrics.get("pair_encoder")),
                   "seconds": time.perf_counter() - t1}}
    print(json.dumps(out, indent=1, default=float))


def at_init(args) -> None:
    """The bi-encoder ``fit`` builds for ``--model`` on the train split, untrained (its head at the cosine), scored on
    the test queries."""
    from transferlab.data import accuracy_at_k, load_dataset, split_validation
    from transferlab.fit._pairs import pair_model_
    from transferlab.models import build, infer, resolve

    train, test = (load_dataset("builtin:rotten-tomatoes-pairs", s) for s in ("train", "test"))
    backbone = resolve(args.model)
    backbone.max_length = 128
    built = build(backbone, train.num_classes)
    tr, _ = split_validation(train, 0.1, args.seed)  # fit's training part
    assert pair_model_(built, "bi", tr) == "bi"  # what fit does
    logits = infer(built.net, built.tensors(test), 64).outputs
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = probs / probs.sum(1, keepdims=True)
    if args.save_probs:
        np.save(_saved(args.save_probs, "init"), probs)
    print(json.dumps({"at_init": args.model, "test_accuracy": float(np.mean(
        logits.argmax(1) == test.labels)), "retrieval": accuracy_at_k(test, probs)},
        default=float))


def _saved(folder: str, name: str):
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f"{name}.npy"


def _found(test, probs, k: int = 1):
    """Per query (grouped by text_a, in first-seen order): whether its match is among its k most probable
    candidates, ties against the match (as accuracy_at_k counts)."""
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(test.meta["text_a"]):
        groups.setdefault(a, []).append(i)
    from transferlab.data import positive_class

    pos = positive_class(test)
    s = probs[:, pos]
    out = []
    for idx in groups.values():
        m = test.labels[idx] == pos
        out.append(int((s[idx][~m] >= s[idx][m].max()).sum()) < k)
    return np.asarray(out)


def _paired(args, test, probs, encoder) -> dict:
    """With --save-probs: the fit's probabilities saved, and its queries found at 1 and 3 against the initial
    bi-encoder's (the zero-shot cosine): queries only the fit finds, only the cosine finds, and the exact two-sided
    sign-test (McNemar) p of that split."""
    if not args.save_probs:
        return {}
    from math import comb

    np.save(_saved(args.save_probs, f"{args.method}-{encoder}-{args.seed}"), probs)
    ref = _saved(args.save_probs, "init")
    if not ref.is_file():
        return {}
    base = np.load(ref)
    out = {}
    for k in (1, 3):
        a, b = _found(test, probs, k), _found(test, base, k)
        gain, loss = int((a & ~b).sum()), int((~a & b).sum())
        n = gain + loss
        p = min(1.0, 2 * sum(comb(n, i) for i in range(min(gain, loss) + 1)) / 2**n) if n else 1.0
        out[f"vs_cosine@{k}"] = {"only_fit": gain, "only_cosine": loss, "sign_test_p": p}
    return out


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
