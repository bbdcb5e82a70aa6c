"""``bench scaling``: does target accuracy after fine-tuning follow the downstream scaling law of Isik et al. (2024)
in the pretraining data size, and does the law predict a pretraining size it was not fitted on?

Per seed and pretraining size :math:`D_p` (a class-stratified sample of the source's train split, drawn per seed),
one small architecture is pretrained from scratch (``transferlab.pretrain.pretrain``: the small zoo's recipe, a
fixed number of epochs, one thread); each pretrained model is fine-tuned on every fine-tuning size :math:`D_f` (a
class-stratified sample of the target's train split, ``fit`` finetune with ``--init``) and tested on the target's
test split. Per :math:`D_f`, the log law ``(log(A · D_p^α))^β`` (:mod:`._scaling_law`: the paper's law for a
quality score; why not its cross-entropy law is said there) is fitted to every (size, seed) point but those of the
largest size, which is held back: the law's prediction there is compared with the accuracy measured, beside two
naive predictors (no growth beyond the largest fitted size; a straight line in log D_p).

The grid runs on the bench harness in two stages, each cached: the pretrained models (``out/models``, their records
in ``out/pretrain``) and the fine-tuning runs (``out/runs``): a bench resumes run by run, and a new fine-tuning size
reuses the pretrained models."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import TransferlabError
from ..report import Column, Table
from ._harness import Job, asked_runtime, backend_of, fmt, run_jobs
from ._result import DeclaredResult
from ._scaling_law import LAW, held_back

SOURCE = "builtin:mixed-source"
TARGET = "builtin:shapes"
SIZES = (250, 500, 1000, 2000, 4000)
FINETUNE = (100, 300)
FORMAT = 1  # of the cached runs: raise it when a run's record changes


@dataclass
class ScalingBenchResult(DeclaredResult):
    source: str
    target: str
    arch: str
    sizes: list[int]
    finetune: list[int]
    seeds: list[int]
    pretraining: list[dict[str, Any]]  # one per (size, seed)
    runs: list[dict[str, Any]]  # one per (size, fine-tuning size, seed)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def held_back_size(self) -> int:
        return max(self.sizes)

    def points(self) -> list[dict[str, Any]]:
        """Per (pretraining size, fine-tuning size): test accuracy mean ± sd over seeds, with the pretraining's
        examples, seconds and source test accuracy (means over seeds)."""
        out = []
        for size in sorted(self.sizes):
            pre = [p for p in self.pretraining if p["size"] == size]
            for n in self.finetune:
                acc = [r["test_accuracy"] for r in self.runs if r["size"] == size and r["finetune"] == n]
                out.append({"size": size, "finetune": n, "n": len(acc), "accuracy_mean": _mean(acc),
                            "accuracy_sd": _sd(acc), "held_back": size == self.held_back_size,
                            "n_pretrain": _mean([p["n_pretrain"] for p in pre]),
                            "pretrain_seconds": _mean([p["pretrain_seconds"] for p in pre]),
                            "source_accuracy": _mean([p["source_accuracy"] for p in pre])})
        return out

    def fits(self) -> list[dict[str, Any]]:
        """Per fine-tuning size: the law fitted on every point below the held-back size, and its prediction there
        (:func:`._scaling_law.held_back`)."""
        out = []
        for n in self.finetune:
            rs = [r for r in self.runs if r["finetune"] == n]
            fitted = [r for r in rs if r["size"] != self.held_back_size]
            measured = [r["test_accuracy"] for r in rs if r["size"] == self.held_back_size]
            out.append({"finetune": n, **held_back([r["size"] for r in fitted], [r["test_accuracy"] for r in fitted],
                                                   self.held_back_size, measured)})
        return out

    def _data(self) -> dict[str, Any]:
        return {"transferlab_version": __version__, "source": self.source, "target": self.target, "arch": self.arch,
                "sizes": self.sizes, "finetune": self.finetune, "seeds": self.seeds, "law": LAW,
                "held_back_size": self.held_back_size, "points": self.points(), "fits": self.fits(),
                "pretraining": self.pretraining, "runs": self.runs, "options": self.options}

    json_name = "bench_scaling.json"
    report = "scaling_bench_html"

    @staticmethod
    def tables_from(d: dict[str, Any]) -> list[Any]:
        return scaling_tables(d)


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def _sd(v: list[float]) -> float | None:
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def _key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def scaling_tables(d: dict[str, Any]) -> list[Table]:
    """The accuracy per (pretraining size, fine-tuning size), and the law's fit and held-back prediction."""
    acc_cols = [Column("size", "pretraining examples", "count"), Column("source_accuracy", "source test accuracy (%)",
                                                                        "number", 1),
                Column("pretrain_seconds", "pretraining s", "seconds"),
                *(Column(f"acc {n}", f"accuracy, {n} fine-tuning examples", "mean_sd", sd=f"sd {n}")
                  for n in d["finetune"]), Column("role", "")]
    rows: dict[int, dict[str, Any]] = {}
    for p in d["points"]:
        row = rows.setdefault(p["size"], {"size": p["size"], "source_accuracy": p["source_accuracy"],
                                          "pretrain_seconds": p["pretrain_seconds"],
                                          "role": "held back" if p["held_back"] else "fitted"})
        row[f"acc {p['finetune']}"], row[f"sd {p['finetune']}"] = p["accuracy_mean"], p["accuracy_sd"]
    fit_cols = [Column("finetune", "fine-tuning examples", "count"),
                *(Column(k, label, align="right") for k, label in (("A", "A"), ("alpha", "α"), ("beta", "β"))),
                Column("rmse", "fit RMSE", "number", 4), Column("n_points", "points fitted", "count"),
                Column("predicted", "predicted", "number"),
                Column("measured", "measured", "mean_sd", sd="measured_sd"),
                Column("error", "error (points)", "points"), Column("loglinear_error", "β = 1 error", "points"),
                Column("flat_error", "no-growth error", "points")]
    frows = [{**{k: _sig((f.get("fit") or {}).get(k)) for k in ("A", "alpha", "beta")},
              **{k: (f.get("fit") or {}).get(k) for k in ("rmse", "n_points")},
              **{c.key: f.get(c.key) for c in fit_cols[6:]}, "finetune": f["finetune"],
              "measured_sd": f.get("measured_sd")} for f in d["fits"]]
    return [Table(f"Target accuracy by pretraining size ({d['target']}; source {d['source']}, {d['arch']}, seeds "
                  f"{d['seeds']})", acc_cols, list(rows.values()), name="accuracy", notes=[
                      "Mean ± sd over seeds of the test accuracy after fine-tuning each pretrained model; pretraining "
                      "examples: a class-stratified sample of the source's train split, drawn per seed."]),
            Table(f"Log law {d['law']} per fine-tuning size: fitted below {d['held_back_size']:,} pretraining "
                  f"examples, predicting {d['held_back_size']:,}", fit_cols, frows, name="fit",
                  verdicts=scaling_verdicts(d), notes=_fit_notes(d))]


def _sig(v: float | None) -> str | None:
    """A parameter to 4 significant digits (α can be 4e-05: fixed decimals would show 0.0000)."""
    return None if v is None else f"{v:.4g}"


def scaling_verdicts(d: dict[str, Any]) -> list[str]:
    """One line per fine-tuning size: the prediction's error against the seeds' spread and the naive predictors."""
    out = []
    for f in d["fits"]:
        if f.get("fit") is None:
            out.append(f"{f['finetune']} fine-tuning examples: no fit ({f.get('why')}).")
            continue
        sd = f.get("measured_sd")
        spread = f" (the seeds' sd there: {100 * sd:.1f})" if sd is not None else ""
        better = [name for name, k in (("the β = 1 line", "loglinear_error"), ("no growth", "flat_error"))
                  if abs(f["error"]) < abs(f[k])]
        out.append(f"{f['finetune']} fine-tuning examples: the law predicts {f['predicted']:.3f} at "
                   f"{f['held_back_size']:,} pretraining examples, measured {f['measured']:.3f}: off by "
                   f"{100 * f['error']:+.1f} points{spread}; "
                   + (f"closer than {' and '.join(better)}." if better else "no closer than the naive predictors."))
    return out


def _fit_notes(d: dict[str, Any]) -> list[str]:
    notes = ["Fitted by least squares on every (size, seed) point below the held-back size (natural log). Error: "
             "prediction − measured mean, in accuracy points; β = 1: a straight line in log D fitted to the same "
             "points; no growth: the mean at the largest fitted size."]
    if any((f.get("fit") or {}).get("interpolates") for f in d["fits"]):
        notes.append("Three fitted sizes for three parameters: the law passes through their means and its fit "
                     "residual says nothing about its shape.")
    return notes


def bench_scaling(
    *,
    out: str | Path,
    source: str = SOURCE,
    target: str = TARGET,
    arch: str = "resnet",
    sizes: Sequence[int] = SIZES,
    finetune: Sequence[int] = FINETUNE,
    seeds: Sequence[int] = (0, 1, 2),
    pretrain_epochs: int = 10,
    epochs: int = 10,
    device: str | None = None,
    precision: str | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    progress: bool = False,
) -> ScalingBenchResult:
    """Pretrain ``arch`` on ``sizes`` examples of ``source`` (per seed), fine-tune each on ``finetune`` examples of
    ``target``, test; fit the log law per fine-tuning size below the largest size and predict it. ``backend``:
    ``local`` (one run after the other, here) or ``ray`` (each run a Ray task of ``cpus_per_run`` CPUs and
    ``gpus_per_run`` GPUs on the cluster at ``address``); ``device`` and ``precision``: where and how each run
    computes."""
    sizes, finetune, seeds = sorted(set(sizes)), sorted(set(finetune)), list(dict.fromkeys(seeds))
    fp = _check(source, target, arch, sizes, finetune, seeds)
    runner = backend_of(backend, address, cpus_per_run, gpus_per_run)
    run = {"backend": runner, "device": device, "precision": precision, "progress": progress}
    models, asked = Path(out) / "models", asked_runtime(device, precision)
    pre_jobs, ft_jobs = [], []
    for seed in seeds:
        for size in sizes:
            pkey = {"source": fp, "arch": arch, "size": size, "seed": seed, "pe": pretrain_epochs}
            d = models / f"pre-{arch}-{_key(**pkey, **asked)}"  # its own folder per device and precision asked
            pre_jobs.append(Job(f"pretrain {size} seed {seed}", scaling_pretrain, {
                "model": str(d), "source": source, "arch": arch, "size": size, "seed": seed,
                "epochs": pretrain_epochs}, key=pkey, needs=(str(d / "model.safetensors"),)))
            ft_jobs += [Job(f"{size} pretraining, {n} fine-tuning, seed {seed}", scaling_run, {
                "model": str(d), "target": target, "arch": arch, "size": size, "finetune": n, "seed": seed,
                "epochs": epochs}, key={**pkey, "target": target, "finetune": n, "e": epochs}) for n in finetune]
    pretraining = run_jobs(pre_jobs, bench="scaling-pretrain", version=FORMAT, cache=Path(out) / "pretrain",
                           figure=lambda r: f"source accuracy {fmt(r['source_accuracy'], 1)} %", **run)
    runs = run_jobs(ft_jobs, bench="scaling", version=FORMAT, cache=Path(out) / "runs",
                    figure=lambda r: f"test accuracy {fmt(r['test_accuracy'])}", **run)
    return ScalingBenchResult(source, target, arch, sizes, finetune, seeds, pretraining, runs,
                              {"pretrain_epochs": pretrain_epochs, "epochs": epochs,
                               "model": f"builtin:small_{arch}_shapes"})


def _check(source: str, target: str, arch: str, sizes: list[int], finetune: list[int], seeds: list[int]) -> str:
    """Bad input as one clear error before any work; the source's fingerprint (the pretraining cache's key)."""
    from ..data import load_dataset
    from ..pretrain import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise TransferlabError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    if len(sizes) < 4:
        raise TransferlabError(f"bench scaling needs at least 4 pretraining sizes (the law has 3 parameters and the "
                               f"largest size is held back), got {len(sizes)}: {sizes}")
    if not finetune or not seeds:
        raise TransferlabError("bench scaling needs at least one fine-tuning size and one seed")
    src, tgt = load_dataset(source, "train"), load_dataset(target, "train")
    for name, ds in (("source", src), ("target", tgt)):
        if ds.modality != "image":
            raise TransferlabError(f"the {name} {ds.name} holds {ds.modality} data: the small architectures take "
                                   "images")
    for what, ns, ds in (("pretraining", sizes, src), ("fine-tuning", finetune, tgt)):
        low = 2 * int(np.count_nonzero(ds.class_counts()))
        if min(ns) < low or max(ns) > len(ds):
            raise TransferlabError(f"{what} sizes must lie in [{low}, {len(ds)}] for {ds.name} (2 examples per class "
                                   f"up to its whole train split), got {min(ns)} to {max(ns)}")
    return src.fingerprint


def scaling_pretrain(model: str, source: str, arch: str, size: int, seed: int, epochs: int) -> dict[str, Any]:
    """Pretrain ``arch`` on a ``size``-example sample of ``source`` into ``model`` (a job of the harness)."""
    from ..pretrain import pretrain

    r = pretrain(source, arch, model, epochs=epochs, limit=size, seed=seed, overwrite=True)
    return {"size": size, "seed": seed, "n_pretrain": r.metrics["n_train"], "pretrain_seconds": r.train_seconds,
            "source_accuracy": r.source_accuracy}


def scaling_run(model: str, target: str, arch: str, size: int, finetune: int, seed: int,
                epochs: int) -> dict[str, Any]:
    """Fine-tune the pretrained ``model`` on a ``finetune``-example sample of ``target``, test (a job of the
    harness)."""
    from ..data import load_dataset
    from ..fit import fit

    sample = load_dataset(target, "train").stratified_sample(finetune, seed=seed)
    r = fit(sample, f"builtin:small_{arch}_shapes", "finetune", test=load_dataset(target, "test"), init=model,
            epochs=epochs, seed=seed)
    return {"size": size, "finetune": finetune, "seed": seed, "test_accuracy": r.metrics["test_accuracy"],
            "val_accuracy": r.metrics["val_accuracy"], "n_train": r.metrics["n_train"],
            "finetune_seconds": r.metrics["train_seconds"]}
