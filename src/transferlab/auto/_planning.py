"""Making the plan of ``transferlab auto`` from the measured costs (``_plan``): the ranking's sample, the method,
the epochs, whether the runner-up, the ensemble and the distillation fit in the budget; and re-planning when the
full ranking chooses other candidates than the probe did. The plan is saved in ``auto.json``: a resumed run follows
the plan it started with (a fit resumes from its checkpoints only with the same epochs)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..data import Dataset
from ..errors import TransferlabError
from . import _costs as C
from . import _plan as P
from ._ledger import Ledger


@dataclass
class Costing:
    """What a plan is made from: the training and test splits, the run's settings, the probe ranking's measured
    costs, and the fit costs (measured by probe fits when a plan first needs them, then kept: a re-plan and a
    resumed run reuse them). ``step``: the calibration's progress, told what each probe measures."""

    train: Dataset
    test: Dataset | None
    rank: C.RankCost
    fits: dict[str, C.FitCost]
    image_size: int | None
    seed: int
    step: Any = None

    def fit(self, ref: str, method: str) -> C.FitCost:
        key = f"{ref}|{method}"
        if key not in self.fits:
            if method == "linear_probe":  # one pass of features (as the ranking measured them) and a regression
                # a probe's fixed costs are small: on shapes (Lite0, 810 + 90 + 300 images) its stage spent 11 s,
                # all but ~1.5 s in the features; the regression and the report (no learning curves) about 1 s
                fwd = self.rank.per_example(ref, min(len(self.train), C.RANK_LIMIT))
                self.fits[key] = C.FitCost(self.rank.load.get(ref, 0.0) + 0.5, fwd, fwd, 0, report_seconds=1.0)
            else:
                self.fits[key] = C.fit_cost(self.train, ref, method, self.image_size, self.seed, self.step)
        return self.fits[key]


@contextlib.contextmanager
def _calibrating(run: Ledger) -> Iterator[Any]:
    """The calibration's progress while it runs: a bar whose note names the probe running (in a pipe, a plain line
    every few seconds); yields ``step(what)``, told before each probe."""
    from .._progress import progress as progress_bars

    with progress_bars(run.progress) as bars:
        task = bars.add("calibrate", None)
        started = []

        def step(what: str) -> None:
            if started:
                bars.advance(task, note=what)
            else:
                bars.note(task, what)
            started.append(what)

        yield step
        if started:
            bars.advance(task, note="done")


def make_initial_plan(run: Ledger, train: Dataset, test: Dataset | None, zoo: Any, candidates_all: list[str],
                      image_size: int | None, seed: int, check_s: float) -> P.Plan:
    """The saved plan of a resumed run, or a new one from the calibration (measured now, or recorded before). A
    budget that even the cheapest plan cannot keep on any machine is refused before calibrating."""
    saved = run.state.get("plan")
    if saved is not None and run.done("calibrate") is not None:
        return P.Plan.from_dict(saved)
    rec = run.done("calibrate")
    t = time.perf_counter()
    if rec is None:
        _refuse_hopeless(run, train, test, zoo)
        run.say("calibrating: probe rankings and probe fits time every stage")
    with _calibrating(run) as step:
        cost = C.rank_cost(train, zoo, image_size, seed, step) if rec is None else C.RankCost(**rec["rank_cost"])
        n_rank = P.rank_sample(cost, len(train), run.budget)
        C.mark_cached(cost, train, zoo, n_rank, image_size, seed)
        order = [m for m in cost.probe_order if m in candidates_all] or candidates_all
        costing = Costing(train, test, cost, {k: C.FitCost(**v) for k, v in (rec or {}).get("fit_cost", {}).items()},
                          image_size, seed, step)
        plan = _make_plan(run, costing, n_rank, order[:2], check_s)
    secs = time.perf_counter() - t if rec is None else rec["seconds"]
    if rec is None:
        run.record("check", check_s)
        run.record("calibrate", secs, rank_cost=cost.__dict__,
                   fit_cost={k: v.__dict__ for k, v in costing.fits.items()})
        run.say(f"calibrated in {P.fmt_seconds(secs)} (counted in the plan and the budget)")
    plan.stages[0].measured = plan.stages[0].estimate = run.done("check")["seconds"]
    plan.stages[1].measured = plan.stages[1].estimate = secs
    run.save_plan(plan)
    return plan


def _refuse_hopeless(run: Ledger, train: Dataset, test: Dataset | None, zoo: Any) -> None:
    """Refuse, before calibrating, a budget below the lower bound of the cheapest plan (:func:`P.floor_seconds`)."""
    from ..zoo import load_zoo

    n_models = len((load_zoo(zoo) if not hasattr(zoo, "models") else zoo).models)
    floor = run.elapsed() + P.floor_seconds(n_models, len(train), len(test) if test is not None else 0)
    if floor > run.budget:
        raise TransferlabError(f"a budget of {_secs(run.budget)} is too small for even the cheapest plan "
                               f"(calibrate, rank {n_models} models, a linear probe): it needs at least "
                               f"{_secs(floor)} on any machine; give --budget {P.budget_text(floor)} or more "
                               "(the calibration then measures what this machine needs)")


def _secs(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else P.fmt_seconds(s)


def _make_plan(run: Ledger, c: Costing, n_rank: int, cands: list[str], check_s: float) -> P.Plan:
    B, train, cost = run.budget, c.train, c.rank
    n_tr, n_val = P.split_sizes(len(train))
    n_test = len(c.test) if c.test is not None else 0
    sizes = (n_tr, n_val, n_test)
    per_class = len(train) / train.num_classes
    ranked = run.done("rank") is not None
    rank_est = 0.0 if ranked else cost.estimate(n_rank)  # a finished ranking is in elapsed() already
    reserve = P.RESERVE_SHARE * B

    def left() -> float:  # read again after each calibration: the probe fits' own seconds count against the budget
        return B - run.elapsed() - rank_est - reserve

    stages = [P.Stage("check", check_s, "check the data: classes, tiny classes, imbalance, train/test duplicates"),
              P.Stage("calibrate", 0.0, f"probe rankings on {cost.n_probe} examples; probe fits of the candidates")]
    cached = sum(bool(v) for v in cost.cached.values())
    stages.append(P.Stage("rank", cost.estimate(n_rank), f"rank {len(cost.load)} models on {n_rank} training "
                          "examples (the consensus of every metric, with the baselines)"
                          + (f"; {cached} already in the feature cache" if cached else ""), options={"limit": n_rank}))
    first = cands[0]
    probe = c.fit(first, "linear_probe")
    minimum = run.elapsed() + (0.0 if ranked else cost.estimate(min(cost.n_probe, len(train)))) + probe.estimate(
        n_tr, n_val, n_test, 1) + reserve
    if minimum > B * 1.1:
        raise TransferlabError(f"a budget of {P.fmt_seconds(B)} is too small for even the cheapest plan (rank on "
                               f"{min(cost.n_probe, len(train))} examples, a linear probe of {first}): it needs about "
                               f"{_secs(minimum)}; give --budget {P.budget_text(minimum)} or more")
    partial = c.fit(first, "partial")
    method, why = P.choose_method(per_class, train.modality, partial.params, P.epochs_affordable(partial, *sizes,
                                                                                                 left()))
    c1 = c.fit(first, method)
    epochs = 1 if method == "linear_probe" else min(P.MAX_EPOCHS, P.epochs_affordable(c1, *sizes, left()))
    if method in ("finetune", "lora") and epochs < P.MIN_EPOCHS:  # too slow for this method: the cheaper one
        method, why = P.choose_method(per_class, train.modality, 0, P.epochs_affordable(partial, *sizes, left()))
        c1 = c.fit(first, method)
        epochs = 1 if method == "linear_probe" else min(P.MAX_EPOCHS, P.epochs_affordable(c1, *sizes, left()))
    est1 = c1.estimate(n_tr, n_val, n_test, epochs)
    if method == "linear_probe" and est1 > left() and not ranked:  # the probe alone overruns: rank a smaller sample
        n_rank = min(n_rank, cost.n_probe)
        stages[-1] = P.Stage("rank", cost.estimate(n_rank), f"rank {len(cost.load)} models on {n_rank} examples "
                             "(a small sample: the budget is tight)", options={"limit": n_rank})
    fit1 = P.Stage("fit 1", est1, f"{method} on {first}" + (f", up to {epochs} epochs, early stopping after "
                   f"{P.patience(epochs)} without a better validation accuracy" if method != "linear_probe" else ""), why,
                   options={"model": first, "method": method, "epochs": epochs, "budget_seconds": max(1.0, left()),
                            **_epoch_split(c1, sizes)})
    stages.append(fit1)
    more, notes = _runner_up(lambda ref: c.fit(ref, method), cands, fit1, c1, left, sizes)
    stages += more
    probe_est = probe.estimate(n_tr, n_val, n_test, 1)
    if method != "linear_probe" and probe_est <= P.PROBE_SHARE * B:  # in time the fits leave (early stopping)
        stages.append(P.Stage("probe", probe_est, f"if time is left: a linear probe of {first} (kept if its "
                              "validation accuracy is as good)", options={"model": first, "method": "linear_probe",
                                                                          "epochs": 1}))
    stages.append(P.Stage("report", 2.0, "copy the chosen model, write metrics.json and report.html (the test "
                          "split was evaluated by its fit)"))
    run.state.setdefault("fit_cost", {}).update({k: v.__dict__ for k, v in c.fits.items()})
    return P.Plan(B, stages, cands, method, why, notes)


def _epoch_split(cost: C.FitCost, sizes: tuple[int, int, int]) -> dict[str, float]:
    """A fit stage's fixed seconds and seconds per epoch (its loop's budget leaves room for both)."""
    fixed = cost.estimate(*sizes, 0)
    return {"fixed_seconds": fixed, "epoch_seconds": cost.estimate(*sizes, 1) - fixed}


def _runner_up(cost_of: Any, cands: list[str], fit1: P.Stage, c1: C.FitCost, left: Any,
               sizes: tuple[int, int, int]) -> tuple[list[P.Stage], list[str]]:
    """The runner-up's fit, the ensemble and its distillation, when all three fit in what the first fit leaves of
    ``left()`` (``fit1``'s budget then shrinks to make room); else a note saying why not. ``cost_of(ref)``: a
    candidate's measured fit cost with the first fit's method (its probe fits' seconds count: ``left()`` is read
    after them)."""
    n_tr, n_val, n_test = sizes
    method, epochs, est1 = fit1.options["method"], fit1.options["epochs"], fit1.estimate
    remaining = left() - est1
    if len(cands) < 2 or method == "linear_probe":
        return [], []
    c2 = cost_of(cands[1]) if remaining > est1 * 0.8 else None
    if c2 is None:
        return [], [f"no ensemble: {P.fmt_seconds(max(0, remaining))} left after the first fit"]
    remaining = left() - est1
    est2 = c2.estimate(n_tr, n_val, n_test, epochs)
    ens_est = 2 * (n_val + n_test) * max(c1.eval_per_example, c2.eval_per_example) + 2 * (c1.setup + c2.setup)
    dist_est = (c1.setup + c2.setup + P.DISTILL_EPOCHS * n_tr * (c1.train_per_example + c1.eval_per_example
                                                                 + c2.eval_per_example)
                + n_test * c1.eval_per_example + 6.0)
    if est2 + ens_est + dist_est > remaining:
        return [], [f"no ensemble: fitting the runner-up and distilling would need "
                    f"{P.fmt_seconds(est2 + ens_est + dist_est)}, {P.fmt_seconds(max(0, remaining))} left"]
    fit1.options["budget_seconds"] = max(1.0, left() - est2 - ens_est - dist_est)
    return [P.Stage("fit 2", est2, f"{method} on the runner-up {cands[1]}, {epochs} epochs",
                    options={"model": cands[1], "method": method, "epochs": epochs, "budget_seconds": est2 * 1.2,
                             **_epoch_split(c2, sizes)}),
            P.Stage("ensemble", ens_est, "average the two models' probabilities on the validation and test splits"),
            P.Stage("distill", dist_est, f"if the ensemble gains >= {100 * P.ENSEMBLE_GAIN:.0f} point of validation "
                    f"accuracy: distil it into the better model (multi_avg, {P.DISTILL_EPOCHS} epochs)")], []


def replan(run: Ledger, plan: P.Plan, train: Dataset, test: Dataset | None, ranked: list[str],
           image_size: int | None, seed: int) -> P.Plan:
    """A new plan for the fits after the ranking chose other candidates (its cost is in ``elapsed()`` now)."""
    rec = run.done("calibrate")
    if rec is None:
        return plan
    fcost = {k: C.FitCost(**v) for k, v in {**rec.get("fit_cost", {}), **run.state.get("fit_cost", {})}.items()}
    run.say(f"the ranking chose {', '.join(ranked[:2])} (the probe: {', '.join(plan.candidates)}): re-planning")
    old = {s.name: s for s in plan.stages}
    with _calibrating(run) as step:  # the new candidates' probe fits
        costing = Costing(train, test, C.RankCost(**rec["rank_cost"]), fcost, image_size, seed, step)
        new = _make_plan(run, costing, plan.stage("rank").options["limit"], ranked[:2], old["check"].measured or 0.0)
    for s in new.stages:  # what already ran keeps its record
        if s.name in old and old[s.name].measured is not None:
            s.estimate, s.measured, s.options = old[s.name].estimate, old[s.name].measured, old[s.name].options
    new.notes = plan.notes + [f"re-planned after the ranking (the probe ranking's candidates were "
                              f"{', '.join(plan.candidates)})"] + new.notes
    run.save_plan(new)
    return new
