"""``bench prune``: does pretraining on the source classes a target needs (DP4TL) keep the transfer of pretraining on
the whole source, at a fraction of the cost?

Per target and seed, one small architecture is pretrained from scratch (``transferlab.pretrain.pretrain``) on the
full source and on the ``keep`` share of its classes chosen by ``label_map``, ``feature_map``, ``random`` (seeded
per seed) and the bottom of ``label_map``'s ranking; each is fine-tuned on the target (``fit`` finetune with
``--init``) and tested on the target's test split. The surrogate of the two mapping methods is the full-source model
of seed 0 (as in the paper: a model trained on the source). Pretraining runs on one thread, so its seconds compare
across rows of one bench.

Every pretrained model is cached in ``out/models`` and every run in ``out/runs/<key>.json``: a bench resumes run by
run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_json_atomic
from .._version import __version__
from ..errors import TransferlabError
from ._harness import Job, asked_runtime, backend_of, fmt, run_jobs
from ._result import DeclaredResult
from ._tables import prune_checks, prune_tables

SOURCE = "builtin:mixed-source"
TARGETS = ("builtin:shapes", "builtin:textures")
ROWS = ("full", "label_map", "feature_map", "random", "bottom")
FORMAT = 1  # of the cached runs: raise it when a run's record changes


@dataclass
class PruneBenchResult(DeclaredResult):
    source: str
    targets: list[str]
    arch: str
    keep: float
    seeds: list[int]
    runs: list[dict[str, Any]]  # one per (target, row, seed)
    options: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """Per (target, row): target accuracy mean ± sd over seeds, the mean per-seed difference to the full source,
        classes and examples pretrained on, pretraining seconds and the speed-up against the full source."""
        out = []
        for t in self.targets:
            full = {r["seed"]: r for r in self.runs if r["target"] == t and r["row"] == "full"}
            full_s = _mean([r["pretrain_seconds"] for r in full.values()])
            for row in ROWS:
                rs = [r for r in self.runs if r["target"] == t and r["row"] == row]
                if not rs:
                    continue
                acc = [r["test_accuracy"] for r in rs]
                secs = _mean([r["pretrain_seconds"] for r in rs])
                out.append({"target": t, "row": row, "n": len(rs), "accuracy_mean": _mean(acc),
                            "accuracy_sd": _sd(acc),
                            "delta_vs_full": _mean([r["test_accuracy"] - full[r["seed"]]["test_accuracy"]
                                                    for r in rs if r["seed"] in full]),
                            "classes": rs[0]["classes"], "n_pretrain": rs[0]["n_pretrain"],
                            "pretrain_seconds": secs, "speedup_vs_full": (full_s / secs) if full_s and secs else None,
                            "source_accuracy": _mean([r["source_accuracy"] for r in rs])})
        return out

    def _data(self) -> dict[str, Any]:
        d = {"transferlab_version": __version__, "source": self.source, "targets": self.targets,
             "arch": self.arch, "keep": self.keep, "seeds": self.seeds, "table": self.table(), "runs": self.runs,
             "options": self.options}
        return {**d, "verdicts": {"checks": prune_checks(d)}}  # the check per target

    json_name = "bench_prune.json"
    report = "prune_bench_html"
    tables_from = staticmethod(prune_tables)


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def _sd(v: list[float]) -> float | None:
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def _key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _pretrained(out: Path, source: str | Path, arch: str, seed: int, epochs: int, limit: int | None,
                progress: bool, runtime: dict[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """A model pretrained on ``source`` (a reference or a manifest directory), cached by the source's content (and
    ``runtime``: the device and precision a run was asked for, a folder of their own)."""
    from ..data import load_dataset
    from ..pretrain import pretrain

    fp = load_dataset(source, "train").fingerprint
    d = out / "models" / f"pre-{arch}-{_key(fp=fp, seed=seed, epochs=epochs, limit=limit, **(runtime or {}))}"
    if not (d / "metrics.json").is_file():
        pretrain(source, arch, d, epochs=epochs, limit=limit, seed=seed, overwrite=True, progress=progress)
    return d, json.loads((d / "metrics.json").read_text())


def _subset(out: Path, target: str, row: str, seed: int, surrogate: Path, keep: float, source: str,
            limit: int | None) -> Path:
    """The manifest directory of ``row``'s kept classes for ``target``."""
    from ..data import MANIFEST, manifest_dict
    from ..prune import prune

    method = "label_map" if row == "bottom" else row
    # the kept classes depend on the surrogate (its folder's name: architecture, epochs, sample) and the scoring sample
    used = {"surrogate": surrogate.name, "limit": limit} if method != "random" else {"limit": limit}
    key = _key(target=target, seed=seed if row == "random" else 0, keep=keep, src=source, **used)
    d = out / "subsets" / f"{row}-{key}"
    if (d / MANIFEST).is_file():
        return d
    r = prune(source, target, None if method == "random" else surrogate, method, keep=keep, seed=seed,
              limit=limit, out=d if row != "bottom" else None, overwrite=True)
    if row == "bottom":  # the lowest-ranked share (ties: the source's order, reversed)
        names = list(r.scores)
        order = sorted(range(len(names)), key=lambda c: (r.scores[names[c]], -c))
        kept = [names[c] for c in sorted(order[:len(r.kept)])]
        d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(d / MANIFEST, manifest_dict(source, kept, d, method="label_map (bottom)",
                                                       scores=r.scores))
    return d


def _classes_inside(src: Any, tgt: Any) -> str:
    """The target classes whose examples are source examples (compared by content), described; '' when none."""
    from ..data import item_digests

    seen = dict(zip(item_digests(src), src.labels.tolist(), strict=True))
    hits: dict[str, set[str]] = {}
    for d, y in zip(item_digests(tgt), tgt.labels.tolist(), strict=True):
        if d in seen:
            hits.setdefault(str(tgt.class_names[y]), set()).add(str(src.class_names[seen[d]]))
    return "; ".join(f"{c} = source {', '.join(sorted(s))}" for c, s in sorted(hits.items())[:3])


def bench_prune(
    *,
    out: str | Path,
    source: str = SOURCE,
    targets: Sequence[str] = TARGETS,
    arch: str = "resnet",
    keep: float = 0.5,
    seeds: Sequence[int] = (0, 1, 2),
    pretrain_epochs: int = 10,
    epochs: int = 10,
    limit: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    progress: bool = False,
) -> PruneBenchResult:
    """Pretrain ``arch`` on the full ``source`` and on the ``keep`` share of its classes chosen by every row, fine-tune
    each on every target, test; ``limit``: a class-stratified sample of the source (pretraining and scoring).
    ``backend``: ``local`` (one run after the other, here) or ``ray`` (each run a Ray task of ``cpus_per_run``
    CPUs and ``gpus_per_run`` GPUs on the cluster at ``address``, default ``$RAY_ADDRESS``, else a local Ray);
    ``device`` and ``precision``: where and how each run computes, on the machine it runs on (the surrogate is
    pretrained here first)."""
    from ..data import load_dataset
    from ..pretrain import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise TransferlabError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    if not 0 < keep < 1:
        raise TransferlabError(f"keep must lie in (0, 1) for a bench against the full source, got {keep}")
    if not seeds or not targets:
        raise TransferlabError("bench prune needs at least one seed and one target")
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)
    src = load_dataset(source, "train")
    for t in targets:
        tgt = load_dataset(t, "train")
        if tgt.modality != "image":
            raise TransferlabError(f"the target {t} holds {tgt.modality} data: the small architectures take images")
        shared = set(map(str, tgt.class_names)) & set(map(str, src.class_names))
        if shared:
            raise TransferlabError(f"the target {t} shares classes with the source ({', '.join(sorted(shared)[:3])}"
                                   "): the bench asks about transfer to classes outside the source")
        inside = _classes_inside(src, tgt)  # by content: a renamed copy of source classes is no new target
        if inside:
            raise TransferlabError(f"the target {t} holds examples of the source under other names ({inside}): the "
                                   "bench asks about transfer to classes outside the source")
    out_dir = Path(out)
    model_ref = f"builtin:small_{arch}_shapes"  # the architecture fit builds; --init replaces its weights
    _pretrained(out_dir, source, arch, 0, pretrain_epochs, limit, False)  # the surrogate, before the runs
    rt = asked_runtime(device, precision)  # each run's own pretraining: on the device and at the precision asked
    jobs = [Job(f"{t.removeprefix('builtin:')} {row} seed {seed}", prune_run,
                {"out": str(out_dir), "target": t, "row": row, "seed": seed, "arch": arch, "keep": keep,
                 "source": source, "pretrain_epochs": pretrain_epochs, "epochs": epochs, "limit": limit,
                 **({"runtime": rt} if rt else {})},
                key={"target": t, "row": row, "seed": seed, "arch": arch, "keep": keep, "source": source,
                     "pe": pretrain_epochs, "e": epochs, "limit": limit})  # where the bench lives is not an input
            for t in targets for seed in seeds for row in ROWS]
    runs = run_jobs(jobs, bench="prune", version=FORMAT, cache=out_dir / "runs", progress=progress,
                    backend=runner, device=device, precision=precision,
                    figure=lambda r: f"test accuracy {fmt(r['test_accuracy'])}")
    return PruneBenchResult(str(source), list(targets), arch, keep, list(seeds), runs,
                            {"pretrain_epochs": pretrain_epochs, "epochs": epochs, "limit": limit,
                             "model": model_ref})


def prune_run(out: str, target: str, row: str, seed: int, arch: str, keep: float, source: str,
              pretrain_epochs: int, epochs: int, limit: int | None,
              runtime: dict[str, str] | None = None) -> dict[str, Any]:
    """Pretrain on ``row``'s share of the source (cached in ``out/models``), fine-tune on ``target``, test (a job of
    the harness)."""
    from ..data import load_dataset
    from ..fit import fit

    out_dir = Path(out)
    surrogate, _ = _pretrained(out_dir, source, arch, 0, pretrain_epochs, limit, False)
    data = source if row == "full" else _subset(out_dir, target, row, seed, surrogate, keep, source, limit)
    kept = load_dataset(data, "train")
    # the same examples per class as the full source's sample: a subset of it, not a new sample
    n_source = len(load_dataset(source, "train"))
    sub_limit = None if limit is None or row == "full" else max(kept.num_classes, round(limit * len(kept) / n_source))
    pre, pm = _pretrained(out_dir, data, arch, seed, pretrain_epochs, limit if row == "full" else sub_limit, False,
                          runtime)
    r = fit(target, f"builtin:small_{arch}_shapes", "finetune", init=pre, epochs=epochs, seed=seed)
    return {"target": target, "row": row, "seed": seed, "test_accuracy": r.metrics["test_accuracy"],
            "val_accuracy": r.metrics["val_accuracy"], "classes": [str(c) for c in kept.class_names],
            "n_pretrain": pm["n_train"], "pretrain_seconds": pm["train_seconds"],
            "source_accuracy": pm["source_test_accuracy"], "finetune_seconds": r.metrics["train_seconds"]}
