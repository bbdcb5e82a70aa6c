"""What ``bench rank``'s ranking cost against its ground truth: the cold figure (as the feature cache recorded it
when the features and scores were computed), never a warm run's cache reads passed off as the cost of ranking."""

from __future__ import annotations

from typing import Any


def ranking_cost(results: list[Any], ranking_seconds: float, ground_truth_seconds: float,
                 cells_cached: int) -> dict[str, Any]:
    """What ranking cost next to the ground truth it saves. ``ranking_seconds``: this run's; ``ranking_cache``:
    whether its features came from the cache (``warm``, ``partly warm``) or were computed (``cold``);
    ``ranking_cold_seconds``: what computing them and their scores cost, per model, as recorded when they were
    computed (this run's on a cold run, the cache's on a warm one), summed like the ground truth's cell times (whose
    cached cells count their stored time; rank's pipeline runs a model's metrics while the next model extracts, so
    this sum can exceed the wall clock); None when the cache recorded none for some model. The ratio is against
    that cold figure, never against a warm run's cache reads; None without it."""
    caches = [r.cache for r in results]
    states = {c.get("state") for c in caches}
    state = "warm" if states == {"warm"} else "cold" if states <= {"cold", "off"} else "partly warm"
    colds = [c.get("cold") or {} for c in caches]
    cold = float(sum(c["seconds"] for c in colds)) if colds and all(c.get("complete") for c in colds) else None
    dates = sorted(c["recorded_at"] for c in colds if c.get("recorded_at"))
    return {"ranking_seconds": ranking_seconds, "ranking_cache": state, "ranking_cold_seconds": cold,
            "ranking_cold_recorded_at": dates[0] if dates and state != "cold" else None,
            "ground_truth_seconds": ground_truth_seconds,
            "ground_truth_over_ranking": ground_truth_seconds / cold if cold else None,
            "ground_truth_cells_cached": cells_cached}


def cost_line(cost: dict[str, Any]) -> str:
    """``ranking 0.4 s (warm: features and scores from the cache; cold 212.3 s, recorded 2026-12-06), ground truth
    1394.6 s (6.6× the cold ranking)``: a warm ranking is said to be warm and never divides the ground truth.
    A ``cost`` of an earlier bench.json (no ``ranking_cache``) reads as a cold one."""
    state = cost.get("ranking_cache", "cold")
    cold, ratio = cost.get("ranking_cold_seconds"), cost.get("ground_truth_over_ranking")
    if state == "cold":
        how = "cold: features computed in this run" + (f"; extraction and metrics {cold:.1f} s" if cold else "")
    elif cold is not None:
        when = cost.get("ranking_cold_recorded_at")
        how = (f"{_from_cache(state)}; cold {cold:.1f} s" + (f", recorded {str(when)[:10]}" if when else ""))
    else:
        how = f"{_from_cache(state)}; the cold time was not recorded (an earlier version's cache)"
    if ratio:
        tail = f" ({ratio:.1f}× the cold ranking)"
    else:
        tail = " (no ratio: a warm ranking is not what ranking costs)" if state != "cold" else ""
    return f"ranking {cost['ranking_seconds']:.1f} s ({how}), ground truth {cost['ground_truth_seconds']:.1f} s{tail}"


def _from_cache(state: str) -> str:
    return f"{state}: {'some ' if state == 'partly warm' else ''}features and scores from the cache"
