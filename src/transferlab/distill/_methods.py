"""The distillation methods: each turns the frozen teachers' logits (and the student's frozen starting point, where it
needs one) into the soft targets of a step, and says how they combine with the labels.

A method is ``factory(n_teachers, **options) -> Method``; register one with ``@METHODS.register(name, summary=...,
paper=...)``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._registry import Registry
from ..errors import TransferlabError

METHODS: Registry[Callable[..., Method]] = Registry("distillation method")


@dataclass
class Targets:
    """What a method reads of one step: the teachers' logits (in the data's class order), the frozen starting
    student's logits (or None), the labels (-1: unlabelled) and the teachers' weights."""

    teacher_logits: Sequence[Any]
    start_logits: Any
    y: Any
    weights: Sequence[float]


@dataclass
class Method:
    """``targets(t) -> (probabilities at T [B, C], logs)``; ``kd_weight``: w of (1 − w)·CE + w·T²·KL (1: KL only);
    ``needs_start``: the student's frozen starting point is a candidate (kl_dp); ``feature_weight``: the hint loss's
    weight (0: none); ``weighted``: the teachers' weights come from rank scores (``weight_metric``,
    ``weight_temperature``)."""

    temperature: float
    kd_weight: float
    targets: Callable[[Targets], tuple[Any, dict[str, Any]]]
    needs_start: bool = False
    feature_weight: float = 0.0
    weighted: bool = False
    weight_metric: str = "consensus"
    weight_temperature: float = 1.0


def _check(temperature: float, kd_weight: float = 0.5) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise TransferlabError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (math.isfinite(kd_weight) and 0.0 <= kd_weight <= 1.0):
        raise TransferlabError(f"kd_weight must lie in [0, 1] (the distillation term's share), got {kd_weight!r}")


def _one_teacher(name: str, n_teachers: int) -> None:
    if n_teachers != 1:
        raise TransferlabError(f"{name} distils one teacher, got {n_teachers}: use multi_avg, multi_weighted or "
                               "kl_dp for several")


def _mixed(temperature: float) -> Callable[[Targets], tuple[Any, dict[str, Any]]]:
    from ._losses import mixed_teacher

    return lambda t: (mixed_teacher(t.teacher_logits, temperature, t.weights), {})


@METHODS.register("kd", summary="Hinton's knowledge distillation from one teacher",
                  paper="Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, 2015",
                  reference="yoshitomo-matsubara/torchdistill KDLoss (alpha = 1 - kd_weight)")
def kd(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9) -> Method:
    """(1 − ``kd_weight``)·CE + ``kd_weight``·T²·KL(teacher_T ‖ student_T)."""
    _check(temperature, kd_weight)
    _one_teacher("kd", n_teachers)
    return Method(temperature, kd_weight, _mixed(temperature))


@METHODS.register("multi_avg", summary="several teachers: their tempered probabilities averaged (an ensemble "
                  "teacher)", paper="e.g. Hinton et al. 2015 (ensembles); multi-teacher distillation of LMs")
def multi_avg(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9) -> Method:
    """kd with the mean of the teachers' softmax(z/T) as the teacher."""
    _check(temperature, kd_weight)
    return Method(temperature, kd_weight, _mixed(temperature))


@METHODS.register("multi_weighted", summary="several teachers weighted by how well each transfers to the data "
                  "(rank scores of their features)",
                  paper="in the spirit of DistillWeighted, Borup et al., ICCV 2023 (weights from transferability)")
def multi_weighted(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9,
                   weight_metric: str = "consensus", weight_temperature: float = 1.0) -> Method:
    """kd with Σ_k w_k·softmax(z_k/T) as the teacher, w = softmax(score / ``weight_temperature``) over the teachers'
    ``weight_metric`` scores on the training data (``consensus``: the rank consensus, in [0, 1], of logme, leep,
    nce, sfda, gbc and knn; or one metric's name)."""
    _check(temperature, kd_weight)
    if not (math.isfinite(weight_temperature) and weight_temperature > 0):
        raise TransferlabError(f"weight_temperature must be a finite number > 0, got {weight_temperature!r}")
    if weight_metric != "consensus":
        from ..rank import list_metrics

        if weight_metric not in list_metrics():
            raise TransferlabError(f"unknown weight_metric {weight_metric!r}; known: consensus, "
                                   f"{', '.join(list_metrics())}")
    return Method(temperature, kd_weight, _mixed(temperature), weighted=True, weight_metric=weight_metric,
                  weight_temperature=weight_temperature)


@METHODS.register("kl_dp", summary="per example, distil from whichever of {the student's starting point, each "
                  "teacher} is most right: a weaker teacher cannot pull a trained student down",
                  paper="Roth et al., Fantastic Gains and Where to Find Them, ICLR 2024",
                  reference="ExplainableML/FantasticGains @ f756c18")
def kl_dp(n_teachers: int, temperature: float = 1.0, unsupervised: bool = False) -> Method:
    """KL only (no cross-entropy) to the candidate giving the true class the highest probability (``unsupervised``,
    and every unlabelled example: the highest maximum probability); the starting point wins ties."""
    _check(temperature)
    from ._losses import kl_dp_targets

    def targets(t: Targets) -> tuple[Any, dict[str, Any]]:
        y = t.y if not unsupervised else t.y * 0 - 1
        p, choice = kl_dp_targets([t.start_logits, *t.teacher_logits], y, temperature)
        return p, {"teacher_share": (choice > 0).float().mean()}

    return Method(temperature, 1.0, targets, needs_start=True)


@METHODS.register("feature", summary="kd plus a hint loss on pooled features through a learned linear projector",
                  paper="Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015 (on pooled features)")
def feature(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9, feature_weight: float = 1.0) -> Method:
    """kd + ``feature_weight``·MSE(P·f_student, f_teacher) on the features that enter the heads."""
    _check(temperature, kd_weight)
    _one_teacher("feature", n_teachers)
    if not (math.isfinite(feature_weight) and feature_weight >= 0):
        raise TransferlabError(f"feature_weight must be a finite number >= 0, got {feature_weight!r}")
    return Method(temperature, kd_weight, _mixed(temperature), feature_weight=feature_weight)
