"""The stages of ``transferlab auto`` after the plan: rank, fit, ensemble, distil, and the output. Each records itself
in the run's ``auto.json`` when it finishes, and returns its record when a rerun finds it there. Stage directories
are recorded relative to the run's directory (``work/fit-1``), so a run that moves (``--overwrite`` swaps a sibling
into place) still finds them."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import copy_inside, mark_owned, replace_dir, write_json_atomic, write_text_atomic
from ..data import Dataset, split_validation
from . import _plan as P
from ._ledger import Ledger

#: what a model directory holds, the card last (a copy that has the card is whole)
_MODEL_FILES = ("model.safetensors", "adapter_model.safetensors", "adapter_config.json", "config.json", "heads",
                "tokenizer", "transferlab.json")


def _acc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def stage_rank(run: Ledger, plan: P.Plan, train: Dataset, zoo: Any, seed: int, image_size: int | None,
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


def _finished_fit(d: Path, ref: str, o: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a fit that finished in ``d`` but was killed before it was recorded, if it is this stage's."""
    if not ((d / "metrics.json").is_file() and (d / "transferlab.json").is_file()):
        return None
    try:
        card, m = json.loads((d / "transferlab.json").read_text()), json.loads((d / "metrics.json").read_text())
    except ValueError:
        return None
    same = (card.get("method") == o["method"] and (card.get("train") or {}).get("epochs") == o["epochs"]
            and m.get("model") in (ref, card.get("model")))
    return m if same else None


def stage_fit(run: Ledger, st: P.Stage, name: str, data: Any, test: Dataset | None, ref: str, image_size: int | None,
              seed: int, progress: bool) -> dict[str, Any]:
    from ..fit import fit

    rec = run.done(name)
    if rec is not None:
        st.measured = rec["seconds"]
        return rec["result"]
    rel = "work/" + name.replace(" ", "-")
    d = run.path(rel)
    o = st.options
    # the loop stops after the epoch that crosses its budget: leave room for that epoch and the fixed costs
    allot = min(o.get("budget_seconds", st.estimate), run.left() - P.RESERVE_SHARE * run.budget)
    epoch_s = float(o.get("epoch_seconds") or st.estimate / max(o["epochs"], 1))
    train_budget = max(epoch_s, allot - float(o.get("fixed_seconds") or 0.0) - epoch_s)
    run.say(f"[{name}] {st.what} (estimate {P.fmt_seconds(st.estimate)})")
    t = time.perf_counter()
    kw = {} if o["method"] == "linear_probe" else {"patience": P.patience(o["epochs"]),
                                                        "budget_minutes": train_budget / 60.0}
    m = _finished_fit(d, ref, o) if d is not None else None
    if m is None:
        m = fit(data, ref, o["method"], test=test, out=d, epochs=o["epochs"], seed=seed, image_size=image_size,
                progress=progress, **kw).metrics
        secs = time.perf_counter() - t
    else:  # finished before a kill: its own training time stands for the stage
        secs = float(m.get("train_seconds") or 0.0)
    st.measured = secs
    res = {"model": ref, "method": o["method"], "dir": rel if d is not None else None,
           "val_accuracy": m.get("val_accuracy"), "test_accuracy": m.get("test_accuracy"),
           "epochs": m.get("epochs"), "epochs_planned": o["epochs"], "stopped_early": m.get("stopped_early"),
           "train_seconds": m.get("train_seconds"), "seconds": secs}
    run.record(name, secs, result=res)
    run.say(f"[{name}] validation accuracy {_acc(res['val_accuracy'])}, test accuracy {_acc(res['test_accuracy'])} "
            f"({P.fmt_seconds(secs)})")
    return res


def stage_ensemble(run: Ledger, plan: P.Plan, train: Dataset, test: Dataset | None, fits: dict[str, Any],
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
        pa, pb = predict(run.path(a["dir"]), ds)[1], predict(run.path(b["dir"]), ds)[1]
        out[f"{split}_accuracy"] = float(np.mean(((pa + pb) / 2).argmax(1) == ds.labels))
    best = max(a["val_accuracy"] or 0.0, b["val_accuracy"] or 0.0)
    out["gain"] = (out["val_accuracy"] - best) if "val_accuracy" in out else 0.0
    secs = time.perf_counter() - t
    st.measured = secs
    run.record("ensemble", secs, result=out)
    run.say(f"[ensemble] validation accuracy {_acc(out.get('val_accuracy'))} "
            f"({100 * out['gain']:+.1f} points over the better model)")
    return out


def stage_distill(run: Ledger, st: P.Stage, data: Any, test: Dataset | None, fits: dict[str, Any], student: str,
                  image_size: int | None, seed: int, progress: bool) -> dict[str, Any]:
    from ..distill import distill

    rec = run.done("distill")
    if rec is not None:
        st.measured = rec["seconds"]
        return rec["result"]
    rel = "work/distill"
    d = run.path(rel)
    run.say(f"[distill] {st.what}")
    t = time.perf_counter()
    if d is not None and (d / "metrics.json").is_file() and (d / "transferlab.json").is_file():
        m = json.loads((d / "metrics.json").read_text())  # finished before a kill
    else:
        # the student starts from a copy of the better fit: distill refuses a student that is also a teacher
        start = run.path("work/distill-student")
        _copy_model(run.path(fits[student]["dir"]), start, start)
        m = distill(data, [run.path(fits["fit 1"]["dir"]), run.path(fits["fit 2"]["dir"])], start, "multi_avg",
                    test=test, epochs=P.DISTILL_EPOCHS, out=d, seed=seed, image_size=image_size,
                    progress=progress).metrics
    secs = time.perf_counter() - t
    st.measured = secs
    res = {"model": fits[student]["model"], "method": f"{fits[student]['method']} + distilled (multi_avg)",
           "dir": rel, "val_accuracy": m.get("val_accuracy"), "test_accuracy": m.get("test_accuracy"),
           "epochs": m.get("epochs"), "seconds": secs}
    run.record("distill", secs, result=res)
    run.say(f"[distill] validation accuracy {_acc(res['val_accuracy'])}, test accuracy "
            f"{_acc(res['test_accuracy'])} ({P.fmt_seconds(secs)})")
    return res


def _card_for(src: Path, dest: Path) -> dict[str, Any]:
    """The chosen model's card with its local paths recorded relative to ``dest`` instead of ``src``."""
    from ..models import local_reference, recorded_path, recorded_reference

    card = json.loads((src / "transferlab.json").read_text())
    if card.get("model"):
        card["model"] = recorded_reference(local_reference(card["model"], src), dest)
    for key in ("init",):
        if card.get(key):
            card[key] = recorded_path(src / card[key], dest)
    if card.get("teachers"):
        card["teachers"] = [recorded_path(src / t, dest) if not (":" in t and not t.startswith((".", "/")))
                            else t for t in card["teachers"]]
    return card


def _copy_model(src: Path, dest: Path, card_for: Path) -> None:
    """The model files of the directory ``src`` copied into ``dest``, each through a temporary name, the card last
    (with its local paths recorded relative to ``card_for``, where the copy will be read)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in _MODEL_FILES:
        p = src / name
        tmp = dest / f".{name}.tmp"
        if p.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            copy_inside(p, src, tmp)
            shutil.rmtree(dest / name, ignore_errors=True)
            tmp.replace(dest / name)
        elif name == "transferlab.json":
            write_json_atomic(dest / name, _card_for(src, card_for))
        elif p.is_file():
            copy_inside(p, src, tmp)
            tmp.replace(dest / name)


def finish(run: Ledger, result: Any, work: Path, out: Path, fits: dict[str, Any]) -> None:
    """Copy the chosen model to the root (the card last), write metrics.json and report.html, record the run as
    finished; a sibling work directory then replaces ``out``."""
    from ..report import auto_report_html

    st = result.plan.stage("report")
    t = time.perf_counter()
    src = run.path(fits[result.chosen]["dir"])
    _copy_model(src, work, out)
    from ..models import write_hf_files

    # a text model's top-level tokenizer files and README.md card, written for this folder (its paths, its card)
    write_hf_files(work, json.loads((work / "transferlab.json").read_text()))
    fit_report = (src / "report.html").read_text() if (src / "report.html").is_file() else None
    st.measured = time.perf_counter() - t  # the copy; the writing below adds a fraction of a second
    result.metrics["stages"] = {s.name: {"estimate": s.estimate, "measured": s.measured} for s in result.plan.stages}
    result.metrics["wall_seconds"] = run.elapsed()
    result.metrics["plan"] = result.plan.to_dict()
    write_json_atomic(work / "metrics.json", result.metrics)
    write_text_atomic(work / "report.html", auto_report_html(result.to_dict() | {"ranking": result.ranking},
                                                            fit_report))
    run.record("report", time.perf_counter() - t)
    if work != out:
        replace_dir(work, out)  # marks the new output as transferlab's; refuses an out holding the user's files
    else:
        mark_owned(out)  # every entry is this run's: a later --overwrite may replace it
    result.out = out
