"""The distillation methods. A method is its extra modules and its loss (as domain's): the modules it needs beside the
student and the frozen teachers (the student's frozen starting point for kl_dp, a learned projector for feature),
built once by a hook given the student and the teachers; and a loss over one step's student logits, teacher logits
(in the data's class order), labels (-1: unlabelled), teacher weights, step context and, where the method asks for
them, pooled features.

A method is ``factory(n_teachers, **options) -> Method``; register one with ``@METHODS.register(name, summary=...,
paper=...)``. The objective has no method-specific branch: a new method is one entry here."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry
from ..errors import TransferlabError

METHODS: Registry[Callable[..., Method]] = Registry("distillation method")


@dataclass
class Step:
    """What a method's loss reads of one step."""

    x: Any  # the student's input (a frozen copy of the student reads it too)
    student_logits: Any  # [B, C], with gradient
    teacher_logits: Sequence[Any]  # each [B, C] in the data's class order, float32, no gradient
    y: Any  # [B]; -1: unlabelled
    weights: Sequence[float]  # the teachers' mixing weights (sum 1)
    ctx: Any  # the loop's StepContext (epoch, epochs, progress...)
    features: Mapping[str, Any] = field(default_factory=dict)  # pooled features of the networks in ``Method.taps``


@dataclass
class Setup:
    """What a method's hooks are given, once before training: the student and the teachers (``Member``: ``net``,
    ``inputs(ds)``, ``order``, ``meta``), the labelled data (``data``: before the hold-out; ``train``: after it;
    ``val``: the hold-out, never trained on by the student), the ``unlabelled`` examples, ``heldout`` (labelled
    examples the caller vouches no teacher trained on), the batch size and the seed; a hook may add to ``warnings``
    (logged, and kept in metrics.json)."""

    student: Any
    student_ref: str
    teachers: Sequence[Any]
    data: Any
    train: Any
    batch_size: int
    seed: int
    warnings: list[str] = field(default_factory=list)
    val: Any = None
    unlabelled: Any = None
    heldout: Any = None


Loss = Callable[[Step, Mapping[str, Any]], tuple[Any, dict[str, Any]]]


@dataclass
class Method:
    """``loss(step, modules) -> (loss, logs)``; ``modules(setup) -> {name: module}``: built beside the student (a
    module whose parameters require gradients is trained with it, a frozen one stays frozen); ``taps``: the networks
    (``model``, ``teacher0``...) whose pooled features (their heads' input) the loss reads in ``step.features``;
    ``teacher_weights(setup) -> (weights, table)``: the teachers' mixing weights and what they came from (None:
    uniform)."""

    loss: Loss
    modules: Callable[[Setup], dict[str, Any]] | None = None
    taps: tuple[str, ...] = ()
    teacher_weights: Callable[[Setup], tuple[list[float], dict[str, Any]]] | None = None


def _check(temperature: float, kd_weight: float = 0.5) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise TransferlabError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (math.isfinite(kd_weight) and 0.0 <= kd_weight <= 1.0):
        raise TransferlabError(f"kd_weight must lie in [0, 1] (the distillation term's share), got {kd_weight!r}")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise TransferlabError(f"{name} must be a finite number >= 0, got {value!r}")


def _one_teacher(name: str, n_teachers: int) -> None:
    if n_teachers != 1:
        raise TransferlabError(f"{name} distils one teacher, got {n_teachers}: use multi_avg, multi_weighted or "
                               "kl_dp for several")


Targets = Callable[[Step, Mapping[str, Any]], tuple[Any, dict[str, Any]]]


def _soft_logits(z: Any, zscore: bool) -> Any:
    """The logits a soft term reads: as they are, or standardised per example (``zscore``: Sun et al., CVPR 2024)."""
    from ._losses import standardised

    return standardised(z) if zscore else z


def _mixed(temperature: float, zscore: bool = False) -> Targets:
    """The teachers' Σ_k w_k·softmax(z_k/T) as the soft targets (each z_k standardised first under ``zscore``)."""
    from ._losses import mixed_teacher

    return lambda s, modules: (mixed_teacher([_soft_logits(z, zscore) for z in s.teacher_logits], temperature,
                                             s.weights), {})


def _soft(targets: Targets, temperature: float, kd_weight: float, zscore: bool = False) -> Loss:
    """The kd family: (1 − w)·CE + w·T²·KL(targets ‖ softmax(z_s/T)), the soft term logged as ``kl``; under
    ``zscore`` the soft term reads the standardised student logits (the CE the raw ones, as the reference)."""
    from ._losses import kd_loss, soft_kl

    def loss(s: Step, modules: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        p_t, logs = targets(s, modules)
        z_soft = _soft_logits(s.student_logits, zscore)
        value = kd_loss(s.student_logits, p_t, s.y, temperature, kd_weight, z_soft=z_soft)
        return value, {**logs, "kl": soft_kl(z_soft.detach(), p_t, temperature)}

    return loss


@METHODS.register("kd", summary="Hinton's knowledge distillation from one teacher",
                  paper="Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, 2015",
                  reference="yoshitomo-matsubara/torchdistill KDLoss (alpha = 1 - kd_weight)")
def kd(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9, zscore: bool = False) -> Method:
    """(1 − ``kd_weight``)·CE + ``kd_weight``·T²·KL(teacher_T ‖ student_T); ``zscore``: both logit vectors
    standardised before the softmax at T (the reference's setting: T = 2, CE : KD = 0.1 : 9, kd_weight ≈ 0.989)."""
    _check(temperature, kd_weight)
    _one_teacher("kd", n_teachers)
    return Method(_soft(_mixed(temperature, zscore), temperature, kd_weight, zscore))


@METHODS.register("multi_avg", summary="several teachers: their tempered probabilities averaged (an ensemble "
                  "teacher)", paper="e.g. Hinton et al. 2015 (ensembles); multi-teacher distillation of LMs")
def multi_avg(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9, zscore: bool = False) -> Method:
    """kd with the mean of the teachers' softmax(z/T) as the teacher (``zscore``: as kd's)."""
    _check(temperature, kd_weight)
    return Method(_soft(_mixed(temperature, zscore), temperature, kd_weight, zscore))


@METHODS.register("multi_weighted", summary="several teachers weighted by how well each transfers to the data "
                  "(rank scores of their features)",
                  paper="in the spirit of DistillWeighted, Borup et al., ICCV 2023 (weights from transferability)")
def multi_weighted(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9,
                   weight_metric: str = "consensus", weight_temperature: float = 1.0, zscore: bool = False,
                   weight_data: str = "auto") -> Method:
    """kd with Σ_k w_k·softmax(z_k/T) as the teacher, w = softmax(score / ``weight_temperature``) over the teachers'
    ``weight_metric`` scores (``consensus``: the rank consensus, in [0, 1], of logme, leep, nce, sfda, gbc and knn;
    or one metric's name) on data the teachers did not train on, never their own training examples (which flatter
    the teacher that overfit them): ``weight_data`` ``heldout`` (``distill(heldout=...)``), ``unlabelled`` (the
    unlabelled examples, labelled by the teachers' :func:`~._weights.pseudo_labels`), ``val`` (the student's hold-out: unseen by
    teachers fitted on other data) or ``auto`` (the first of these that exists)."""
    _check(temperature, kd_weight)
    if weight_data not in ("auto", "heldout", "unlabelled", "val"):
        raise TransferlabError(f"weight_data must be auto, heldout, unlabelled or val, got {weight_data!r}")
    if not (math.isfinite(weight_temperature) and weight_temperature > 0):
        raise TransferlabError(f"weight_temperature must be a finite number > 0, got {weight_temperature!r}")
    if weight_metric != "consensus":
        from ..rank import list_metrics

        if weight_metric not in list_metrics():
            raise TransferlabError(f"unknown weight_metric {weight_metric!r}; known: consensus, "
                                   f"{', '.join(list_metrics())}")
    from ._weights import by_rank_scores

    return Method(_soft(_mixed(temperature, zscore), temperature, kd_weight, zscore),
                  teacher_weights=by_rank_scores(weight_metric, weight_temperature, weight_data))


def _frozen_start(b: Setup) -> dict[str, Any]:
    """The student's frozen starting point, kl_dp's first candidate."""
    import copy

    if not b.student.meta.get("trained"):
        b.warnings.append(f"kl_dp starts from an untrained student ({b.student_ref} has a fresh head): its starting "
                          "point is never the better candidate, so it degenerates to copying the teachers; give a "
                          "fitted student directory")
    start = copy.deepcopy(b.student.net).eval()
    for p in start.parameters():
        p.requires_grad_(False)
    return {"start": start}


@METHODS.register("kl_dp", summary="per example, distil from whichever of {the student's starting point, each "
                  "teacher} is most right: a weaker teacher cannot pull a trained student down",
                  paper="Roth et al., Fantastic Gains and Where to Find Them, ICLR 2024",
                  reference="ExplainableML/FantasticGains @ f756c18")
def kl_dp(n_teachers: int, temperature: float = 1.0, unsupervised: bool = False) -> Method:
    """KL only (no cross-entropy) to the candidate giving the true class the highest probability (``unsupervised``,
    and every unlabelled example: the highest maximum probability); the starting point wins ties."""
    _check(temperature)
    from ._losses import kl_dp_targets

    def targets(s: Step, modules: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        import torch

        with torch.no_grad():
            start = modules["start"](s.x).float()
        y = s.y if not unsupervised else s.y * 0 - 1
        p, choice = kl_dp_targets([start, *s.teacher_logits], y, temperature)
        return p, {"teacher_share": (choice > 0).float().mean()}

    return Method(_soft(targets, temperature, 1.0), modules=_frozen_start)


def _projector(b: Setup) -> dict[str, Any]:
    """A linear map from the student's pooled features to the first teacher's (seeded by the run's seed)."""
    import numpy as np
    import torch

    from ..models import features_and_probs

    one = b.data.subset(np.arange(min(2, len(b.data))))
    d_s = features_and_probs(b.student.net, b.student.inputs(one))[0].shape[1]
    d_t = features_and_probs(b.teachers[0].net, b.teachers[0].inputs(one))[0].shape[1]
    torch.manual_seed(b.seed)
    return {"projector": torch.nn.Linear(d_s, d_t)}


@METHODS.register("feature", summary="kd plus a hint loss on pooled features through a learned linear projector",
                  paper="Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015 (on pooled features)")
def feature(n_teachers: int, temperature: float = 4.0, kd_weight: float = 0.9, feature_weight: float = 1.0) -> Method:
    """kd + ``feature_weight``·MSE(P·f_student, f_teacher) on the features that enter the heads."""
    _check(temperature, kd_weight)
    _one_teacher("feature", n_teachers)
    _non_negative("feature_weight", feature_weight)
    from ._losses import hint_loss

    soft = _soft(_mixed(temperature), temperature, kd_weight)

    def loss(s: Step, modules: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        value, logs = soft(s, modules)
        hint = hint_loss(s.features["model"], s.features["teacher0"], modules["projector"])
        return value + feature_weight * hint, {**logs, "hint": hint.detach()}

    return Method(loss, modules=_projector, taps=("model", "teacher0"))


@METHODS.register("dkd", summary="decoupled KD: the target class's probability (TCKD) and the distribution over the "
                  "other classes (NCKD) distilled with their own weights, plus the labels' cross-entropy",
                  paper="Zhao et al., Decoupled Knowledge Distillation, CVPR 2022",
                  reference="megvii-research/mdistiller mdistiller/distillers/DKD.py @ e8c5bb3")
def dkd(n_teachers: int, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0,
        warmup_epochs: float = 1.0, pseudo_labels: bool = False, zscore: bool = False) -> Method:
    """CE(z_s, y) + r·(``alpha``·TCKD + ``beta``·NCKD)·T², r = min(epochs done / ``warmup_epochs``, 1) (fractional,
    from 0 at the first step; 0: no ramp; the paper ramps over 20 of 240 epochs). An unlabelled example has no target
    class: it takes no part in the DKD terms (nor the CE), unless ``pseudo_labels``: then the teacher's top class is
    its target in the DKD terms (never in the CE). ``zscore``: the DKD terms read both logit vectors standardised
    (Sun et al.; the CE the raw ones)."""
    _check(temperature)
    _one_teacher("dkd", n_teachers)
    for name, v in (("alpha", alpha), ("beta", beta), ("warmup_epochs", warmup_epochs)):
        _non_negative(name, v)
    from ._losses import dkd_terms, hard_ce, soft_kl, tempered

    def loss(s: Step, modules: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        import torch

        z_t, y = _soft_logits(s.teacher_logits[0], zscore), s.y
        z_s = _soft_logits(s.student_logits, zscore)
        target = torch.where(y >= 0, y, z_t.argmax(1)) if pseudo_labels else y
        rows = target >= 0
        ramp = min(s.ctx.progress * s.ctx.epochs / warmup_epochs, 1.0) if warmup_epochs > 0 else 1.0
        value = hard_ce(s.student_logits, y)
        logs: dict[str, Any] = {"kl": soft_kl(z_s.detach(), tempered(z_t, temperature), temperature),
                                "warmup": ramp}
        n = int(rows.sum())
        if n:
            tckd, nckd = dkd_terms(z_s[rows], z_t[rows], target[rows], temperature)
            value = value + ramp * (alpha * tckd + beta * nckd)
            logs.update(tckd=(float(tckd.detach()) * n, n), nckd=(float(nckd.detach()) * n, n))
        return value, logs

    return Method(loss)


@METHODS.register("dist", summary="DIST: the student's tempered probabilities correlated (Pearson) with the "
                  "teacher's per example and per class, plus the labels' cross-entropy; meant for strong teachers",
                  paper="Huang et al., Knowledge Distillation from A Stronger Teacher, NeurIPS 2022",
                  reference="hunto/image_classification_sota lib/models/losses/dist_kd.py @ 6f7a70a")
def dist(n_teachers: int, temperature: float = 1.0, beta: float = 1.0, gamma: float = 1.0, ce_weight: float = 1.0,
         dist_weight: float = 2.0, zscore: bool = False) -> Method:
    """``ce_weight``·CE + ``dist_weight``·T²·(β·inter + γ·intra): the reference's weights, 1 and 2 (every one of its
    DIST configs, configs/strategies/distill/{resnet_dist,dist_b2,dist_cifar}.yaml: ``ori_loss_weight: 1``,
    ``kd_loss_weight: 2``), β = γ = 1, T = 1 on ImageNet (its ``dist``) and 4 on CIFAR (``dist_t4``); ``zscore``:
    both logit vectors standardised first."""
    _check(temperature)
    _one_teacher("dist", n_teachers)
    for name, v in (("beta", beta), ("gamma", gamma), ("ce_weight", ce_weight), ("dist_weight", dist_weight)):
        _non_negative(name, v)
    from ._losses import dist_loss, hard_ce, soft_kl

    targets = _mixed(temperature, zscore)

    def loss(s: Step, modules: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        p_t, _ = targets(s, modules)
        z_soft = _soft_logits(s.student_logits, zscore)
        d = dist_loss(z_soft, p_t, temperature, beta, gamma)
        value = ce_weight * hard_ce(s.student_logits, s.y) + dist_weight * d
        return value, {"dist": d.detach(), "kl": soft_kl(z_soft.detach(), p_t, temperature)}

    return Method(loss)
