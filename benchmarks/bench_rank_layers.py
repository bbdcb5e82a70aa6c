"""Benchmark: ``rank --layers last|mean|best`` against the ground truth of a ``bench rank`` run (issue 30, item 3).

For each layer mode, ``rank`` scores every target with the zoo, on the same sample as the bench (its ``limit``,
``image_size`` and ``seed``, read from its bench.json); then each metric's and the consensus' weighted Kendall τ
against the bench's ground truth (``transferlab.bench.rank_quality``, as ``bench rank`` computes it). ``--truth
NAME=FILE`` adds another ground truth: a JSON ``{target: {model display name or reference: accuracy}}`` (e.g. a
fine-tuning ground truth published in docs/benchmarks.md). Prints Markdown tables (mean τw per metric and mode,
per-target τw of the consensus, how often each layer won) and writes everything to ``--json``.

Commands (docs/benchmarks.md, "Layer aggregation"):

    TRANSFERLAB_CACHE=/tmp/layercache .venv/bin/transferlab bench rank --zoo builtin:vision \\
        --targets builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures --limit 500 --image-size 32 \\
        --out runs/bench-rank-probe32 --quiet
    TRANSFERLAB_CACHE=/tmp/layercache .venv/bin/python benchmarks/bench_rank_layers.py \\
        runs/bench-rank-probe32/bench.json --truth finetune=benchmarks/rank_finetune_truth_issue13.json \\
        --json runs/bench-rank-layers-vision.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.bench import rank_quality
from transferlab.rank import rank
from transferlab.zoo import LAYER_MODES, load_zoo


def _truth(path: Path, names: dict[str, str]) -> dict[str, dict[str, float]]:
    """A ground-truth file keyed by target and model (display name or reference) -> keyed by reference."""
    raw = json.loads(path.read_text())
    return {t: {names.get(m, m): float(a) for m, a in per.items()} for t, per in raw.items()}


def _short(t: str) -> str:
    return t.removeprefix("builtin:")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench_json", type=Path)
    ap.add_argument("--zoo", default=None, help="the bench's zoo (default builtin:ZOO from bench.json)")
    ap.add_argument("--truth", action="append", default=[], help="NAME=FILE: another ground truth")
    ap.add_argument("--modes", default=",".join(LAYER_MODES))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    bench = json.loads(args.bench_json.read_text())
    zoo = load_zoo(args.zoo or f"builtin:{bench['zoo']}")
    names = {e.display_name: e.ref for e in zoo.models}
    opts = bench["options"]
    truths = {f"{bench['protocol']} (bench)": bench["ground_truth"]}
    for item in args.truth:
        name, _, path = item.partition("=")
        truths[name] = _truth(Path(path), names)
    metrics = [m for m in bench["metrics"] if m != "consensus"]  # bench.json's summaries include the consensus
    out: dict[str, Any] = {"bench": str(args.bench_json), "zoo": zoo.name, "targets": bench["targets"],
                           "options": opts, "modes": {}}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        results = {t: rank(t, zoo, metrics, image_size=opts.get("image_size"), limit=opts.get("limit"),
                           seed=opts.get("seed", 0), layers=mode, progress=False) for t in bench["targets"]}
        seconds = time.perf_counter() - t0
        scores = {t: {m: {ms.model: ms.scores.get(m) for ms in r.models} for m in r.metrics}
                  | {"consensus": {ms.model: ms.consensus_score for ms in r.models}} for t, r in results.items()}
        wins = Counter(ms.metadata["layers"]["best_layer"].get(m) == ms.metadata["layers"]["count"] - 1
                       for r in results.values() for ms in r.models if "best_layer" in ms.metadata.get("layers", {})
                       for m in ms.metadata["layers"]["best_layer"] if ms.metadata["layers"]["count"] > 1)
        tau = {g: {m: {t: rank_quality(scores[t][m], truth[t], n_boot=0)["weighted_tau"] for t in bench["targets"]}
                   for m in scores[bench["targets"][0]]} for g, truth in truths.items()}
        out["modes"][mode] = {"seconds": seconds, "scores": scores, "weighted_tau": tau,
                              "best_layer_is_output": {"yes": wins[True], "no": wins[False]},
                              "layers": {t: {ms.model: ms.metadata.get("layers") for ms in r.models}
                                         for t, r in results.items()}}
        print(f"{mode}: {seconds:.0f} s", flush=True)
    _print(out, list(truths))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=float))


def _mean(vals: dict[str, float | None]) -> float | None:
    finite = [v for v in vals.values() if v is not None]
    return float(np.mean(finite)) if finite else None


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _print(out: dict[str, Any], truths: list[str]) -> None:
    modes = list(out["modes"])
    first = out["modes"][modes[0]]["weighted_tau"][truths[0]]
    metrics = sorted(first, key=lambda m: (m != "consensus", m))
    head = " | ".join(f"{mode} ({g})" for g in truths for mode in modes)
    print(f"\n| score | {head} |\n|---|" + "---|" * (len(truths) * len(modes)))
    for m in metrics:
        cells = [_fmt(_mean(out["modes"][mode]["weighted_tau"][g][m])) for g in truths for mode in modes]
        print(f"| {m} | " + " | ".join(cells) + " |")
    for g in truths:
        print(f"\nconsensus τw per target ({g}):\n\n| mode | " + " | ".join(map(_short, out["targets"])) + " |")
        print("|---|" + "---|" * len(out["targets"]))
        for mode in modes:
            per = out["modes"][mode]["weighted_tau"][g]["consensus"]
            print(f"| {mode} | " + " | ".join(_fmt(per[t]) for t in out["targets"]) + " |")
    for mode in modes:
        w = out["modes"][mode]["best_layer_is_output"]
        if w["yes"] or w["no"]:
            print(f"\n{mode}: the output was the best layer in {w['yes']} of {w['yes'] + w['no']} (model, target, "
                  "metric) cells of models with several layers")


if __name__ == "__main__":
    main()
