"""The stages of ``transferlab auto`` after the plan: rank, fit, ensemble, distil, and the output. Each records itself
in the run's ``auto.json`` when it finishes, and returns its record when a rerun finds it there."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import replace_dir, write_json_atomic, write_text_atomic
from ..data import Dataset, split_validation
from . import _plan as P
from ._run import Run

_MODEL_FILES = ("model.safetensors", "adapter_model.safetensors", "adapter_config.json", "transferlab.json",
                "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                "heads")


def stage_rank(run: Run, plan: P.Plan, train: Dataset, zoo: Any, seed: int, image_size: int | None,
                progress: bool) -> dict[str, Any]:
    from ..rank import rank

    st = plan.stage("rank")
    rec = run.done("rank")
    path = run.work / "work" / "rank" / "ranking.json" if run.work is not None else None
    if rec is not None and path is not None and path.is_file():
        st.measured = rec["seconds"]
        return json.loads(path.read_text())
    run.say(f"[rank] {st.what} (estimate {P.fmt_seconds(st.estimate)})")
    t = time.perf_counter()
    r = rank(train, zoo, limit=st.options["limit"], seed=seed, image_size=image_size, progress=progress)
    if path is not None:
        r.save(path.parent)
    secs = time.perf_counter() - t
    st.measured = secs
    run.record("rank", secs)
    run.say(r.recommendation())
    return r.to_dict()


def stage_fit(run: Run, st: P.Stage, name: str, data: Any, test: Dataset | None, ref: str, image_size: int | None,
               seed: int, progress: bool) -> dict[str, Any]:
    from ..fit import fit

    rec = run.done(name)
    d = run.work / "work" / name.replace(" ", "-") if run.work is not None else None
    if rec is not None:
        st.measured = rec["seconds"]
        return rec["result"]
    o = st.options
    per_epoch = (st.estimate / max(o["epochs"], 1))
    allot = max(st.estimate, min(o.get("budget_seconds", st.estimate), run.left() - P.RESERVE_SHARE * run.budget))
    run.say(f"[{name}] {st.what} (estimate {P.fmt_seconds(st.estimate)})")
    t = time.perf_counter()
    kw = {} if o["method"] == "linear_probe" else {
        "patience": P.PATIENCE, "budget_minutes": max(per_epoch, allot - per_epoch) / 60.0}
    if d is not None and (d / "metrics.json").is_file() and (d / "transferlab.json").is_file():
        m = json.loads((d / "metrics.json").read_text())  # finished, but killed before it was recorded
    else:
        m = fit(data, ref, o["method"], test=test, out=d, epochs=o["epochs"], seed=seed, image_size=image_size,
                progress=progress, **kw).metrics
    secs = time.perf_counter() - t
    st.measured = secs
    res = {"model": ref, "method": o["method"], "dir": str(d) if d is not None else None,
           "val_accuracy": m.get("val_accuracy"), "test_accuracy": m.get("test_accuracy"),
           "epochs": m.get("epochs"), "epochs_planned": o["epochs"], "stopped_early": m.get("stopped_early"),
           "train_seconds": m.get("train_seconds"), "seconds": secs}
    run.record(name, secs, result=res)
    run.say(f"[{name}] validation accuracy {res['val_accuracy']:.3f}"
            + (f", test accuracy {res['test_accuracy']:.3f}" if res["test_accuracy"] is not None else "")
            + f" ({P.fmt_seconds(secs)})")
    return res


def stage_ensemble(run: Run, plan: P.Plan, train: Dataset, test: Dataset | None, fits: dict[str, Any],
                    seed: int) -> dict[str, Any]:
    from ..models import predict

    st = plan.stage("ensemble")
    rec = run.done("ensemble")
    if rec is not None:
        st.measured = rec["seconds"]
        return rec["result"]
    run.say(f"[ensemble] {st.what}")
    t = time.perf_counter()
    _, val = split_validation(train, 0.1, seed)  # the split every fit held out (same fraction, same seed)
    out: dict[str, Any] = {}
    a, b = fits["fit 1"], fits["fit 2"]
    for split, ds in (("val", val), ("test", test)):
        if ds is None:
            continue
        pa, pb = predict(a["dir"], ds)[1], predict(b["dir"], ds)[1]
        out[f"{split}_accuracy"] = float(np.mean(((pa + pb) / 2).argmax(1) == ds.labels))
    best = max(a["val_accuracy"] or 0.0, b["val_accuracy"] or 0.0)
    out["gain"] = out.get("val_accuracy", 0.0) - best
    secs = time.perf_counter() - t
    st.measured = secs
    run.record("ensemble", secs, result=out)
    run.say(f"[ensemble] validation accuracy {out.get('val_accuracy', float('nan')):.3f} "
            f"({100 * out['gain']:+.1f} points over the better model)")
    return out


def stage_distill(run: Run, st: P.Stage, data: Any, test: Dataset | None, fits: dict[str, Any], student: str,
                   image_size: int | None, seed: int, progress: bool) -> dict[str, Any]:
    from ..distill import distill

    rec = run.done("distill")
    if rec is not None:
        st.measured = rec["seconds"]
        return rec["result"]
    d = run.work / "work" / "distill" if run.work is not None else None
    run.say(f"[distill] {st.what}")
    t = time.perf_counter()
    r = distill(data, [fits["fit 1"]["dir"], fits["fit 2"]["dir"]], fits[student]["dir"], "multi_avg", test=test,
                epochs=P.DISTILL_EPOCHS, out=d, seed=seed, image_size=image_size, progress=progress)
    secs = time.perf_counter() - t
    st.measured = secs
    m = r.metrics
    res = {"model": fits[student]["model"], "method": f"{fits[student]['method']} + distilled (multi_avg)",
           "dir": str(d) if d is not None else None, "val_accuracy": m.get("val_accuracy"),
           "test_accuracy": m.get("test_accuracy"), "epochs": m.get("epochs"), "seconds": secs}
    run.record("distill", secs, result=res)
    return res


def finish(run: Run, result: Any, work: Path, out: Path, fits: dict[str, Any], extra: float) -> None:
    """Copy the chosen model to the root, write metrics.json and report.html; a sibling work dir replaces ``out``."""
    from ..report import auto_report_html

    st = result.plan.stage("report")
    t = time.perf_counter()
    src = Path(fits[result.chosen]["dir"])
    for name in _MODEL_FILES:
        p = src / name
        if p.is_dir():
            shutil.copytree(p, work / name, dirs_exist_ok=True)
        elif p.is_file():
            tmp = work / f".{name}.tmp"
            shutil.copyfile(p, tmp)
            tmp.replace(work / name)
    fit_report = (src / "report.html").read_text() if (src / "report.html").is_file() else None
    st.measured = time.perf_counter() - t + extra
    result.metrics["wall_seconds"] = run.elapsed() + st.measured
    result.metrics["stages"] = {s.name: {"estimate": s.estimate, "measured": s.measured} for s in result.plan.stages}
    result.metrics["plan"] = result.plan.to_dict()
    write_json_atomic(work / "metrics.json", result.metrics)
    write_text_atomic(work / "report.html", auto_report_html(result.to_dict() | {"ranking": result.ranking},
                                                            fit_report))
    run.record("report", st.measured)
    if work != out:
        replace_dir(work, out)
    result.out = out
