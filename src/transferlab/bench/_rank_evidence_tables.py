"""``bench rank``'s evidence, declared once: the priors (their τw and where their values come from), every score's
Δτw over the best prior with its interval and the one-line verdict, and the noise ceiling of the ground truth. Each
function reads a result's ``to_dict()`` (an older bench.json without them gives no table and no verdict)."""

from __future__ import annotations

from typing import Any

from ..report import Column, Table, interval
from ._priors import PRIORS

#: what rank recommends: the models in the consensus' order
RECOMMENDED = "consensus"


def prior_verdict(d: dict[str, Any]) -> str | None:
    """One line: whether the recommended ordering (the consensus) beats the best prior on this pool by a margin the
    data supports (its Δτw interval above 0), or not, and then the prior is the honest choice."""
    pd = (d.get("evidence") or {}).get("prior_delta")
    if not pd or RECOMMENDED not in pd["scores"]:
        return None
    e, best = pd["scores"][RECOMMENDED], pd["best_prior"]
    if e["delta"] is None:
        return f"The {RECOMMENDED} has no weighted τ on this pool: it cannot be compared with the priors."
    how = (f"Δτw {e['delta']:+.2f} {interval(e['ci'])} over {best} (τw {pd['best_prior_tau']:.2f}; 95 % bootstrap "
           f"interval, {pd['n_boot']} resamples of {pd['resampled']})")
    lo, hi = e["ci"] if e["ci"] else (None, None)
    if lo is not None and lo > 0:
        return (f"The recommended ordering ({RECOMMENDED}) beats the best prior on this pool by a margin the data "
                f"supports: {how}.")
    if hi is not None and hi < 0:
        return f"The best prior beats the recommended ordering ({RECOMMENDED}) on this pool: {how}; trust {best}."
    return (f"The recommended ordering ({RECOMMENDED}) does not beat the best prior on this pool by a margin the data "
            f"supports: {how}; the prior {best} is the honest choice here.")


def _sources(prior: dict[str, Any], names: dict[str, str]) -> str:
    """Where a prior's values come from, models grouped by source."""
    groups: dict[str, list[str]] = {}
    for ref, src in prior.get("sources", {}).items():
        groups.setdefault(src, []).append(names.get(ref, ref))
    return "; ".join(f"{', '.join(ms) if len(ms) <= 3 else f'{len(ms)} models'}: {src}"
                     for src, ms in sorted(groups.items(), key=lambda kv: kv[0].startswith("none")))


def _prior_table(d: dict[str, Any]) -> Table:
    names = {m["ref"]: m["name"] for m in d["models"]}
    rows = []
    for p in [p for p in PRIORS if p in d["priors"]]:
        vals = d["priors"][p]["values"]
        summ = d["baselines"].get(p)
        rows.append({"prior": p, "mean": summ["weighted_tau"]["mean"] if summ else None,
                     "known": f"{sum(v is not None for v in vals.values())} of {len(vals)}",
                     "source": _sources(d["priors"][p], names)})
    pd = (d.get("evidence") or {}).get("prior_delta")
    return Table("Priors: what a practitioner would pick without a metric", [
        Column("prior", "prior"), Column("mean", "mean τw", "number", strong=True),
        Column("known", "models with a value"), Column("source", "where the values come from")], rows,
        name="prior_sources", notes=[
            "A prior ranks the models it has no value for last (tied). size_prior: forward FLOPs of one image at the "
            "bench's input size; imagenet_accuracy: ImageNet-1k top-1 where the zoo entry, the model's metadata or "
            "timm's pretrained cfg gives one (never estimated)."
            + (f" Best prior on this pool: {pd['best_prior']}." if pd else "")])


def _delta_table(d: dict[str, Any], verdict: str | None) -> Table:
    pd = d["evidence"]["prior_delta"]
    rows = []
    for name, e in sorted(pd["scores"].items(), key=lambda kv: -(kv[1]["delta"] if kv[1]["delta"] is not None
                                                                  else -9.0)):
        lo, hi = e["ci"] if e["ci"] else (None, None)
        rows.append({"score": name, "mean": e["weighted_tau"], "delta": e["delta"], "ci": interval(e["ci"]),
                     "margin": "n/a" if lo is None else "above 0" if lo > 0 else "below 0" if hi < 0
                     else "includes 0"})
    return Table(f"Δτw over the best prior ({pd['best_prior']}, mean τw {pd['best_prior_tau']:.3f})", [
        Column("score", "score"), Column("mean", "mean τw", "number"),
        Column("delta", "Δτw over the best prior", "signed", strong=True, detail="ci"),
        Column("margin", "95 % interval")], rows, name="priors", verdicts=[verdict] if verdict else [], notes=[
            f"Δτw: the score's mean weighted τ over the targets minus the best prior's; [95 % percentile bootstrap "
            f"interval, {pd['n_boot']} resamples of {pd['resampled']}, seeded; each resample takes its own best "
            "prior, so choosing the prior after the fact is in the interval]. Above 0: a margin the data supports."])


def _noise_table(d: dict[str, Any]) -> Table:
    ev = d["evidence"]
    c, targets = ev["noise_ceiling"], list(d["targets"])
    rows = [{"score": f"noise ceiling ({c['replicates']} replicates)", "tau": c["weighted_tau"],
             "tau ci": interval(c["ci"]), **{t: v for t, v in zip(targets, c["per_target"], strict=True)}}]
    for name, e in sorted((ev.get("against_ceiling") or {}).items(),
                          key=lambda kv: -(kv[1]["weighted_tau"] if kv[1]["weighted_tau"] is not None else -9.0)):
        rows.append({"score": name, "tau": e["weighted_tau"], "fraction": e["fraction"],
                     **dict(zip(targets, e.get("per_target") or [None] * len(targets), strict=True)),
                     "within": "n/a" if e["within"] is None else "yes" if e["within"] else "no"})
    return Table("The ground truth's own noise: the noise ceiling", [
        Column("score", "score"), *(Column(t, t.removeprefix("builtin:"), "number") for t in targets),
        Column("tau", "mean τw vs one replicate", "number", strong=True, detail="tau ci"),
        Column("fraction", "÷ ceiling", "percent", 0), Column("within", "reaches the ceiling's interval")], rows,
        name="noise", notes=[
            "Noise ceiling: the weighted τ between ground truths fitted with different seeds (validation split, "
            f"initialisation, data order), per target and its mean [95 % bootstrap interval, {c['n_boot']} "
            "resamples of models and targets]. A score's τw here is against one replicate (the mean over the "
            "replicates), so both sides rank against one noisy fit; a score that reaches the ceiling's interval is "
            "as good as this ground truth can tell. It may exceed the ceiling: the ceiling compares two noisy fits."])


def evidence_tables(d: dict[str, Any]) -> list[Table]:
    """The priors, the Δτw over the best prior (with the verdict) and the noise ceiling, where the result has them."""
    out = []
    if d.get("priors"):
        out.append(_prior_table(d))
    ev = d.get("evidence") or {}
    if ev.get("prior_delta"):
        out.append(_delta_table(d, prior_verdict(d)))
    if ev.get("noise_ceiling"):
        out.append(_noise_table(d))
    return out
