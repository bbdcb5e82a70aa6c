"""Making the plan of ``transferlab auto`` from the measured costs (``_plan``): the ranking's sample, the method,
the epochs, whether the runner-up, the ensemble and the distillation fit in the budget; and re-planning when the
full ranking chooses other candidates than the probe did. The plan is saved in ``auto.json``: a resumed run follows
the plan it started with (a fit resumes from its checkpoints only with the same epochs)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..data import Dataset
from ..errors import TransferlabError
from . import _costs as C
from . import _plan as P
from ._ledger import Ledger


def make_initial_plan(run: Ledger, train: Dataset, test: Dataset | None, zoo: Any, candidates_all: list[str],
                      image_size: int | None, seed: int, check_s: float) -> P.Plan:
    """The saved plan of a resumed run, or a new one from the calibration (measured now, or recorded before)."""
    saved = run.state.get("plan")
    if saved is not None and run.done("calibrate") is not None:
        return P.Plan.from_dict(saved)
    rec = run.done("calibrate")
    t = time.perf_counter()
    if rec is None:
        run.say("calibrating: probe rankings and probe fits time every stage")
    cost = C.rank_cost(train, zoo, image_size, seed) if rec is None else C.RankCost(**rec["rank_cost"])
    n_rank = P.rank_sample(cost, len(train), run.budget)
    C.mark_cached(cost, train, zoo, n_rank, image_size, seed)
    order = [m for m in cost.probe_order if m in candidates_all] or candidates_all
    fcost = {k: C.FitCost(**v) for k, v in (rec or {}).get("fit_cost", {}).items()}
    plan = _make_plan(run, train, test, cost, n_rank, order[:2], fcost, image_size, seed, check_s)
    secs = time.perf_counter() - t if rec is None else rec["seconds"]
    if rec is None:
        run.record("check", check_s)
        run.record("calibrate", secs, rank_cost=cost.__dict__, fit_cost={k: v.__dict__ for k, v in fcost.items()})
    plan.stages[0].measured = plan.stages[0].estimate = run.done("check")["seconds"]
    plan.stages[1].measured = plan.stages[1].estimate = secs
    run.save_plan(plan)
    return plan


def _fit_cost(fcost: dict[str, C.FitCost], train: Dataset, ref: str, method: str, image_size: int | None,
              seed: int, rank: C.RankCost) -> C.FitCost:
    key = f"{ref}|{method}"
    if key not in fcost:
        if method == "linear_probe":  # one pass of features (as the ranking measured them) and a regression
            # a probe's fixed costs are small: on shapes (Lite0, 810 + 90 + 300 images) its stage spent 11 s, all
            # but ~1.5 s in the features; the regression and the report (no learning curves) about 1 s together
            fwd = rank.per_example(ref, min(len(train), C.RANK_LIMIT))
            fcost[key] = C.FitCost(rank.load.get(ref, 0.0) + 0.5, fwd, fwd, 0, report_seconds=1.0)
        else:
            fcost[key] = C.fit_cost(train, ref, method, image_size, seed)
    return fcost[key]


def _make_plan(run: Ledger, train: Dataset, test: Dataset | None, cost: C.RankCost, n_rank: int, cands: list[str],
               fcost: dict[str, C.FitCost], image_size: int | None, seed: int, check_s: float) -> P.Plan:
    B = run.budget
    n_tr, n_val = P.split_sizes(len(train))
    n_test = len(test) if test is not None else 0
    per_class = len(train) / train.num_classes
    ranked = run.done("rank") is not None
    rank_est = 0.0 if ranked else cost.estimate(n_rank)  # a finished ranking is in elapsed() already
    reserve = P.RESERVE_SHARE * B
    stages = [P.Stage("check", check_s, "check the data: classes, tiny classes, imbalance, train/test duplicates"),
              P.Stage("calibrate", 0.0, f"probe rankings on {cost.n_probe} examples; probe fits of the candidates")]
    cached = sum(bool(v) for v in cost.cached.values())
    stages.append(P.Stage("rank", cost.estimate(n_rank), f"rank {len(cost.load)} models on {n_rank} training "
                          "examples (the consensus of every metric, with the baselines)"
                          + (f"; {cached} already in the feature cache" if cached else ""), options={"limit": n_rank}))
    first = cands[0]
    probe = _fit_cost(fcost, train, first, "linear_probe", image_size, seed, cost)
    left = B - run.elapsed() - rank_est - reserve
    minimum = run.elapsed() + (0.0 if ranked else cost.estimate(min(cost.n_probe, len(train)))) + probe.estimate(
        n_tr, n_val, n_test, 1) + reserve
    if minimum > B * 1.1:
        raise TransferlabError(f"a budget of {P.fmt_seconds(B)} is too small for even the cheapest plan (rank on "
                               f"{min(cost.n_probe, len(train))} examples, a linear probe of {first}): it needs about "
                               f"{P.fmt_seconds(minimum)}; give --budget {int(np.ceil(minimum / 60))}m or more")
    partial = _fit_cost(fcost, train, first, "partial", image_size, seed, cost)
    method, why = P.choose_method(per_class, train.modality, partial.params,
                                  P.epochs_affordable(partial, n_tr, n_val, n_test, left))
    c1 = _fit_cost(fcost, train, first, method, image_size, seed, cost)
    epochs = 1 if method == "linear_probe" else min(P.MAX_EPOCHS, P.epochs_affordable(c1, n_tr, n_val, n_test, left))
    if method in ("finetune", "lora") and epochs < P.MIN_EPOCHS:  # too slow for this method: the cheaper one
        method, why = P.choose_method(per_class, train.modality, 0, P.epochs_affordable(partial, n_tr, n_val, n_test,
                                                                                         left))
        c1 = _fit_cost(fcost, train, first, method, image_size, seed, cost)
        epochs = 1 if method == "linear_probe" else min(P.MAX_EPOCHS, P.epochs_affordable(c1, n_tr, n_val, n_test,
                                                                                          left))
    est1 = c1.estimate(n_tr, n_val, n_test, epochs)
    if method == "linear_probe" and est1 > left and not ranked:  # the probe alone overruns: rank a smaller sample
        n_rank = min(n_rank, cost.n_probe)
        stages[-1] = P.Stage("rank", cost.estimate(n_rank), f"rank {len(cost.load)} models on {n_rank} examples "
                             "(a small sample: the budget is tight)", options={"limit": n_rank})
    fit1 = P.Stage("fit 1", est1, f"{method} on {first}" + (f", up to {epochs} epochs, early stopping after "
                   f"{P.patience(epochs)} without a better validation accuracy" if method != "linear_probe" else ""), why,
                   options={"model": first, "method": method, "epochs": epochs, "budget_seconds": max(1.0, left),
                            "fixed_seconds": c1.estimate(n_tr, n_val, n_test, 0),
                            "epoch_seconds": c1.estimate(n_tr, n_val, n_test, 1) - c1.estimate(n_tr, n_val, n_test,
                                                                                                 0)})
    stages.append(fit1)
    more, notes = _runner_up(lambda ref: _fit_cost(fcost, train, ref, method, image_size, seed, cost), cands, fit1,
                             c1, left, (n_tr, n_val, n_test))
    stages += more
    probe_est = probe.estimate(n_tr, n_val, n_test, 1)
    if method != "linear_probe" and probe_est <= P.PROBE_SHARE * B:  # in time the fits leave (early stopping)
        stages.append(P.Stage("probe", probe_est, f"if time is left: a linear probe of {first} (kept if its "
                              "validation accuracy is as good)", options={"model": first, "method": "linear_probe",
                                                                          "epochs": 1}))
    stages.append(P.Stage("report", 2.0, "copy the chosen model, write metrics.json and report.html (the test "
                          "split was evaluated by its fit)"))
    run.state.setdefault("fit_cost", {}).update({k: v.__dict__ for k, v in fcost.items()})
    return P.Plan(B, stages, cands, method, why, notes)


def _runner_up(cost_of: Any, cands: list[str], fit1: P.Stage, c1: C.FitCost, left: float,
               sizes: tuple[int, int, int]) -> tuple[list[P.Stage], list[str]]:
    """The runner-up's fit, the ensemble and its distillation, when all three fit in what the first fit leaves of
    ``left`` (``fit1``'s budget then shrinks to make room); else a note saying why not. ``cost_of(ref)``: a
    candidate's measured fit cost with the first fit's method."""
    n_tr, n_val, n_test = sizes
    method, epochs, est1 = fit1.options["method"], fit1.options["epochs"], fit1.estimate
    remaining = left - est1
    if len(cands) < 2 or method == "linear_probe":
        return [], []
    c2 = cost_of(cands[1]) if remaining > est1 * 0.8 else None
    if c2 is None:
        return [], [f"no ensemble: {P.fmt_seconds(max(0, remaining))} left after the first fit"]
    est2 = c2.estimate(n_tr, n_val, n_test, epochs)
    ens_est = 2 * (n_val + n_test) * max(c1.eval_per_example, c2.eval_per_example) + 2 * (c1.setup + c2.setup)
    dist_est = (c1.setup + c2.setup + P.DISTILL_EPOCHS * n_tr * (c1.train_per_example + c1.eval_per_example
                                                                 + c2.eval_per_example)
                + n_test * c1.eval_per_example + 6.0)
    if est2 + ens_est + dist_est > remaining:
        return [], [f"no ensemble: fitting the runner-up and distilling would need "
                    f"{P.fmt_seconds(est2 + ens_est + dist_est)}, {P.fmt_seconds(max(0, remaining))} left"]
    fit1.options["budget_seconds"] = max(1.0, left - est2 - ens_est - dist_est)
    return [P.Stage("fit 2", est2, f"{method} on the runner-up {cands[1]}, {epochs} epochs",
                    options={"model": cands[1], "method": method, "epochs": epochs, "budget_seconds": est2 * 1.2,
                             "fixed_seconds": c2.estimate(n_tr, n_val, n_test, 0),
                             "epoch_seconds": c2.estimate(n_tr, n_val, n_test, 1)
                             - c2.estimate(n_tr, n_val, n_test, 0)}),
            P.Stage("ensemble", ens_est, "average the two models' probabilities on the validation and test splits"),
            P.Stage("distill", dist_est, f"if the ensemble gains >= {100 * P.ENSEMBLE_GAIN:.0f} point of validation "
                    f"accuracy: distil it into the better model (multi_avg, {P.DISTILL_EPOCHS} epochs)")], []


def replan(run: Ledger, plan: P.Plan, train: Dataset, test: Dataset | None, ranked: list[str],
           image_size: int | None, seed: int) -> P.Plan:
    """A new plan for the fits after the ranking chose other candidates (its cost is in ``elapsed()`` now)."""
    rec = run.done("calibrate")
    if rec is None:
        return plan
    cost = C.RankCost(**rec["rank_cost"])
    fcost = {k: C.FitCost(**v) for k, v in {**rec.get("fit_cost", {}), **run.state.get("fit_cost", {})}.items()}
    run.say(f"the ranking chose {', '.join(ranked[:2])} (the probe: {', '.join(plan.candidates)}): re-planning")
    old = {s.name: s for s in plan.stages}
    new = _make_plan(run, train, test, cost, plan.stage("rank").options["limit"], ranked[:2], fcost, image_size,
                     seed, old["check"].measured or 0.0)
    for s in new.stages:  # what already ran keeps its record
        if s.name in old and old[s.name].measured is not None:
            s.estimate, s.measured, s.options = old[s.name].estimate, old[s.name].measured, old[s.name].options
    new.notes = plan.notes + [f"re-planned after the ranking (the probe ranking's candidates were "
                              f"{', '.join(plan.candidates)})"] + new.notes
    run.save_plan(new)
    return new
