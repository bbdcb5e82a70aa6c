"""Sentence pairs end to end (issue 34 item 5): rank the text zoo on builtin:rotten-tomatoes-pairs (the joint
representation [u, v, |u - v|, u * v]; each bi-encoder's zero-shot cosine accuracy@k), then fit a pair classifier
(a cross-encoder: the two texts joined by [SEP]) and score it on the test split's queries (accuracy@1/3 of 5
candidates, chance 0.2 / 0.6).

    OMP_NUM_THREADS=1 timeout 1200 .venv/bin/python benchmarks/bench_pairs.py --method lora --epochs 3
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
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
