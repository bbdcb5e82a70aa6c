"""``transferlab auto``: from a dataset to an adapted, evaluated, reported model in one command, within a time budget.

Stages: check the data → calibrate (a probe ranking, probe fits: the plan's estimates) → rank the zoo → fit the top
candidate with the method the budget and the data size allow (early stopping) → where time is left, fit the runner-up,
test their ensemble on the validation split and distil it into the better single model → in the time early stopping
left, a linear probe of the top candidate → copy the model chosen on validation accuracy to the output directory
(``predict`` and ``eval`` work on it) with ``report.html``.

A run records each finished stage in ``OUT/auto.json``; rerun with the same arguments, it resumes at the stage where it
stopped (a fit that was killed resumes from its own checkpoints)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import check_output, refuse_foreign
from .._runtime import in_runtime
from .._version import __version__
from ..data import Dataset, train_and_test
from ..errors import TransferlabError
from . import _plan as P
from ._check import Finding, check_data
from ._ledger import STATE, Ledger, quiet_transformers
from ._planning import make_initial_plan, replan
from ._stages import finish, stage_distill, stage_ensemble, stage_fit, stage_rank

log = logging.getLogger(__name__)


@dataclass
class AutoResult:
    out: Path | None
    plan: P.Plan
    findings: list[Finding]
    ranking: dict[str, Any] | None = None
    chosen: str | None = None  # the stage whose model was kept
    metrics: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")

    def to_dict(self) -> dict[str, Any]:
        return {"transferlab_version": __version__, "plan": self.plan.to_dict(),
                "findings": [f.to_dict() for f in self.findings], "chosen": self.chosen, "metrics": self.metrics,
                "dry_run": self.dry_run}


def _default_zoo(modality: str) -> str:
    return {"text": "builtin:text", "array": "builtin:pixels"}.get(modality, "builtin:vision")


def _candidates(zoo: Any, modality: str) -> list[str]:
    """The zoo's models fit can adapt (not the raw-input or random-init baselines)."""
    from ..zoo import load_zoo, resolve_model

    try:
        z = load_zoo(zoo) if not hasattr(zoo, "models") else zoo
    except TransferlabError as exc:
        raise TransferlabError(f"{exc}; auto needs a zoo with at least one pretrained model") from None
    except Exception as exc:  # a YAML with an empty model list fails the zoo's schema
        raise TransferlabError(f"the zoo {zoo} has no usable models ({str(exc).splitlines()[0]}); auto needs at "
                               "least one pretrained model") from None
    from ..models import adaptable

    refs = []
    for m in z.models:
        b = resolve_model(m.ref)
        if b.metadata().get("baseline") or b.modality not in (modality, "any") or not adaptable(b):
            continue  # ranked, never adapted: baselines, feature extractors (ONNX), other modalities
        refs.append(m.ref)
    if not refs:
        raise TransferlabError(f"the zoo {getattr(z, 'name', zoo)} has no pretrained {modality} model fit can adapt "
                               "(only baselines, feature extractors such as ONNX models, or models of another "
                               "modality); give a zoo with at least one")
    return refs


@in_runtime
@quiet_transformers()  # a run loads each text model a dozen times: no "Loading weights" bar for each
def auto(
    data: Dataset | str | Path | Any,
    zoo: Any = None,
    *,
    budget: str | float = "15m",
    out: str | Path | None = None,
    test: Dataset | str | Path | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    limit: int | None = None,
    progress: bool = False,
    say: Any = None,
) -> AutoResult:
    """Check ``data``, rank ``zoo`` (default: the built-in zoo of its modality), adapt the best candidates with the
    method the ``budget`` (``"15m"``, ``"90s"``, seconds) and the data size allow, evaluate on the test split, try
    an ensemble of the top two and distil it where time is left, and write the chosen model, ``metrics.json`` and
    ``report.html`` to ``out``. ``dry_run``: calibrate and return the plan (nothing is trained or written). ``say``:
    a function that prints one progress line (default: the log). ``limit``: a class-stratified sample of the training
    split (a quick look; the test split is kept whole)."""
    say = say or log.info
    B = P.parse_budget(budget)
    train, test_ds = train_and_test(data, test)
    if limit is not None:
        if limit < 2 * train.num_classes:
            raise TransferlabError(f"--limit {limit} is too small for {train.num_classes} classes: give at least "
                                   f"{2 * train.num_classes}")
        train = train.stratified_sample(limit, seed=seed)
    zoo = zoo or _default_zoo(train.modality)
    out_dir = Path(out) if out is not None else None
    if out_dir is None and not dry_run:
        raise TransferlabError("auto writes a model directory: give out= (or dry_run=True for the plan alone)")
    work = None
    if out_dir is not None and not dry_run:
        check_output(out_dir, inputs=[data] if isinstance(data, (str, Path)) else ())
        work = _claim(out_dir, overwrite)
    identity = {"data": str(data) if isinstance(data, (str, Path)) else train.fingerprint, "zoo": str(zoo),
                "limit": limit,
                "budget": B, "seed": seed, "image_size": image_size,
                "test": str(test) if isinstance(test, (str, Path)) else None}
    run = Ledger(work, identity, B, say, progress)

    # ---- check
    t = time.perf_counter()
    findings = _check(train, test_ds, say)
    candidates_all = _candidates(zoo, train.modality)
    check_s = time.perf_counter() - t

    # ---- calibrate and plan
    plan = make_initial_plan(run, train, test_ds, zoo, candidates_all, image_size, seed, check_s)
    if dry_run:
        return AutoResult(None, plan, findings, dry_run=True)
    say(P.summary_line(plan))

    # ---- rank
    ranking = stage_rank(run, plan, train, zoo, seed, image_size, progress)
    plan = _follow_ranking(run, plan, ranking, candidates_all, train, test_ds, image_size, seed)
    # ---- fit the top candidate(s); the runner-up, the ensemble and the distillation only while time is left
    fit_data = data if isinstance(data, (str, Path)) and limit is None else train  # a reference: recorded as given
    stages = _Stages(run, plan, fit_data, test_ds, image_size, seed, progress)
    fits = _fit_candidates(stages)
    ens = None
    if plan.stage("ensemble") is not None and "fit 2" in fits:
        ens = _ensemble_and_distill(stages, train, fits, keep({k: fits[k] for k in ("fit 1", "fit 2")}))
    _probe(stages, fits)  # in the time the fits left (early stopping): never at the cost of a fit's epochs
    chosen = keep(fits)
    # ---- the output
    metrics = {**fits[chosen], "chosen": chosen, "ensemble": ens, "budget_seconds": B, "fits": fits,
               "findings": [f.to_dict() for f in findings], "stages": {}}
    result = AutoResult(out_dir, plan, findings, ranking, chosen, metrics)
    finish(run, result, work, out_dir, fits)
    return result


def _check(train: Dataset, test: Dataset | None, say: Any) -> list[Finding]:
    """The data's findings: errors refuse the run, warnings are said."""
    findings = check_data(train, test)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise TransferlabError("; ".join(f.message for f in errors))
    for f in findings:
        if f.level == "warning":
            say(f"data: {f.message}")
    return findings


def _follow_ranking(run: Ledger, plan: P.Plan, ranking: dict[str, Any], candidates_all: list[str], train: Dataset,
                    test: Dataset | None, image_size: int | None, seed: int) -> P.Plan:
    """The plan after the full ranking: a note when a baseline leads, re-planned when other models lead."""
    ranked = [m["model"] for m in ranking["models"] if m["model"] in candidates_all]
    top = ranking["models"][0]
    if (top.get("metadata") or {}).get("baseline"):
        plan.notes.append(f"the ranking puts the baseline {top['name']} first: no pretrained model of this zoo looks "
                          f"better than raw inputs for this data; adapting the best pretrained one, {ranked[0]}, "
                          "anyway (a zoo closer to the data may do better)")
    if ranked[:len(plan.candidates)] != plan.candidates:  # the full ranking chose other models: re-plan the fits
        plan = replan(run, plan, train, test, ranked, image_size, seed)
    return plan


@dataclass(frozen=True)
class _Stages:
    """What the fit stages share: the ledger, the plan, the data they fit (and test on), the run's settings."""

    run: Ledger
    plan: P.Plan
    data: Any
    test: Dataset | None
    image_size: int | None
    seed: int
    progress: bool


def _fit_candidates(s: _Stages) -> dict[str, Any]:
    """Fit the plan's candidates in turn; the runner-up (and the ensemble and distillation after it) only while the
    budget, less its reserve, leaves time for it."""
    run, plan = s.run, s.plan
    reserve = P.RESERVE_SHARE * run.budget
    fits: dict[str, Any] = {}
    for k, ref in enumerate(plan.candidates, 1):
        st = plan.stage(f"fit {k}")
        if st is None:
            continue
        before = run.state["stages"].get(st.name) or {}
        if before.get("skipped"):  # skipped before a kill: still skipped (as are the stages after it)
            for n in (st.name, "ensemble", "distill"):
                if plan.stage(n) is not None:
                    plan.stage(n).skipped = (run.state["stages"].get(n) or {}).get("skipped") or before["skipped"]
            break
        if k > 1 and run.done(st.name) is None and run.left() - reserve < st.estimate:
            _skip(run, plan, [st.name, "ensemble", "distill"], f"no time left ({P.fmt_seconds(max(0.0, run.left()))} "
                  f"for a {P.fmt_seconds(st.estimate)} stage)")
            break
        fits[st.name] = stage_fit(run, st, st.name, s.data, s.test, ref, s.image_size, s.seed, s.progress)
    return fits


def _probe(s: _Stages, fits: dict[str, Any]) -> None:
    """The linear probe, in the time the fits left; skipped (and said) when none is left."""
    run, plan = s.run, s.plan
    probe = plan.stage("probe")
    if probe is None or _restore_skipped(run, plan, ["probe"]):
        return
    if run.done("probe") is None and run.left() - P.RESERVE_SHARE * run.budget < probe.estimate:
        _skip(run, plan, ["probe"], f"no time left ({P.fmt_seconds(max(0.0, run.left()))} for a "
              f"{P.fmt_seconds(probe.estimate)} stage)")
    else:
        fits["probe"] = stage_fit(run, probe, "probe", s.data, s.test, probe.options["model"], s.image_size, s.seed,
                                  s.progress)


#: ascending: on equal validation accuracy the later one is kept (the distilled model only when it is better)
PREFERENCE = ["distill", "fit 2", "fit 1", "probe"]


def keep(fits: dict[str, Any]) -> str:
    """The stage whose model has the best validation accuracy; on a tie the simpler model: the probe, then the
    first fit, then the runner-up, then the distilled model."""
    return max(fits, key=lambda k: (fits[k]["val_accuracy"] or 0.0, PREFERENCE.index(k)))


def _restore_skipped(run: Ledger, plan: P.Plan, names: list[str]) -> bool:
    """Stages skipped before a kill stay skipped: their recorded reason back on the plan. True if any was."""
    found = False
    for n in names:
        why = (run.state["stages"].get(n) or {}).get("skipped")
        if why:
            plan.stage(n).skipped, found = why, True
    return found


def _skip(run: Ledger, plan: P.Plan, names: list[str], why: str) -> None:
    for n in names:
        st = plan.stage(n)
        if st is not None and run.done(n) is None:
            st.skipped = why
            run.record(n, 0.0, skipped=why)
    plan.notes.append(f"{', '.join(n for n in names if plan.stage(n) is not None)} skipped: {why}")


def _ensemble_and_distill(s: _Stages, train: Dataset, fits: dict[str, Any], student: str) -> dict[str, Any] | None:
    """The two fits' ensemble and, when it gains enough, its distillation into ``student`` (the better fit)."""
    run, plan, test = s.run, s.plan, s.test
    reserve = P.RESERVE_SHARE * run.budget
    _restore_skipped(run, plan, ["ensemble", "distill"])
    if plan.stage("ensemble").skipped:
        return None
    if run.done("ensemble") is None and run.left() - reserve < plan.stage("ensemble").estimate:
        _skip(run, plan, ["ensemble", "distill"], "no time left")
        return None
    ens = stage_ensemble(run, plan, train, test, fits, s.seed)
    dist = plan.stage("distill")
    if dist.skipped:
        return ens
    if run.done("distill") is None and ens["gain"] < P.ENSEMBLE_GAIN:
        _skip(run, plan, ["distill"], f"the ensemble gained {100 * ens['gain']:+.1f} points of validation accuracy "
              f"(< {100 * P.ENSEMBLE_GAIN:.0f})")
    elif run.done("distill") is None and run.left() - reserve < dist.estimate:
        _skip(run, plan, ["distill"], f"no time left ({P.fmt_seconds(max(0.0, run.left()))} for a "
              f"{P.fmt_seconds(dist.estimate)} stage)")
    else:
        fits["distill"] = stage_distill(run, dist, s.data, test, fits, student, s.image_size, s.seed, s.progress)
    return ens


def _claim(out: Path, overwrite: bool) -> Path:
    """Where the run works: ``out`` itself (resumed when it holds this run's ``auto.json``), or, with ``overwrite``
    of a finished run, a sibling that replaces ``out`` only when the new run is complete."""
    if out.exists() and not out.is_dir():
        raise TransferlabError(f"--out {out} is a file; choose a directory")
    if not out.exists() or not any(out.iterdir()):
        return out
    if not (out / STATE).is_file():
        raise TransferlabError(f"{out} is not empty and holds no transferlab auto run; choose another --out")
    try:
        finished = bool(((json.loads((out / STATE).read_text()).get("stages") or {}).get("report") or {}).get("done"))
    except (OSError, ValueError, AttributeError):
        finished = False
    if not finished:
        return out  # an interrupted run: resumed if the arguments match (else started again in place)
    if not overwrite:
        raise TransferlabError(f"{out} already holds a finished auto run; choose another --out or pass --overwrite")
    refuse_foreign(out)  # before any work: the run would end refusing to replace it
    return out.with_name(f".{out.name}.auto-new")
