"""The domain adaptation methods: each is what it adds to the source cross-entropy — extra modules (a
discriminator) and a transfer loss on the bottleneck features and logits of a paired (source, target) batch.

A method is ``factory(dim, num_classes, seed, **options) -> Method``; register one with ``@METHODS.register(name,
summary=..., paper=...)``. Source-free methods (``source_free=True``: ``shot``, ``nrc``, ``aad``, in
:mod:`._source_free_methods`) adapt a trained source model on the target alone: their loss is the whole objective and
sees no source batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry

METHODS: Registry[Callable[..., Method]] = Registry("domain adaptation method",
                                                    modules=("transferlab.domain._methods",
                                                             "transferlab.domain._source_free_methods"))


@dataclass
class Batch:
    """What a transfer loss reads of one paired step."""

    z_s: Any  # bottleneck features, source
    z_t: Any
    logits_s: Any
    logits_t: Any
    progress: float  # fraction of training done (DANN's schedule)
    index_t: Any = None  # the target examples' positions in the target set (source-free methods' banks)


@dataclass
class Method:
    """``modules``: trained beside the model (e.g. ``{"discriminator": ...}``); ``loss(batch, modules) -> (loss,
    logs)``: the transfer loss the trade-off multiplies (None: source only)."""

    modules: dict[str, Any] = field(default_factory=dict)
    loss: Callable[[Batch, dict[str, Any]], tuple[Any, dict[str, float]]] | None = None
    #: source-free methods: called with the whole target's (probabilities [N, K], classifier-input features [N, d])
    #: in eval mode before the first step and after every epoch (pseudo-labels, feature and score banks)
    on_target: Callable[[Any, Any], None] | None = None
    frozen_classifier: bool = False  # the final linear layer keeps the source model's weights
    #: what the method carries from step to step (banks, pseudo-labels): an object with ``state_dict()`` and
    #: ``load_state_dict(state)`` (tensors, numbers), saved in every epoch's checkpoint so a killed run resumes with it
    state: Any = None


@METHODS.register("source_only", summary="the source cross-entropy alone: the baseline every method must beat")
def source_only(dim: int, num_classes: int, seed: int = 0) -> Method:
    return Method()


@METHODS.register("dann", adversarial=True, summary="domain-adversarial training through gradient reversal",
                  paper="Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016",
                  reference="thuml/Transfer-Learning-Library tllib/alignment/dann.py @ c4aa59e")
def dann(dim: int, num_classes: int, seed: int = 0, hidden: int = 1024, gamma: float = 10.0) -> Method:
    """The discriminator (``hidden``-BN-ReLU x 2 -> 1) learns to tell the domains apart; the reversed gradient
    trains the features to fool it, at λ(p) = 2/(1 + exp(−``gamma``·p)) − 1 over training progress p."""
    from ._losses import dann_coefficient, dann_loss
    from ._nets import Discriminator

    def loss(b: Batch, mods: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        value, acc = dann_loss(mods["discriminator"], b.z_s, b.z_t, dann_coefficient(b.progress, gamma))
        return value, {"domain_accuracy": acc}

    return Method({"discriminator": Discriminator(dim, hidden)}, loss)


def _cdan(dim: int, num_classes: int, seed: int, hidden: int, gamma: float, randomized_dim: int,
          entropy_conditioning: bool) -> Method:
    from ._losses import cdan_loss, dann_coefficient
    from ._nets import CdanDiscriminator

    disc = CdanDiscriminator(dim, num_classes, hidden, randomized_dim=randomized_dim, seed=seed)

    def loss(b: Batch, mods: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        d = mods["discriminator"]
        value, acc = cdan_loss(d, b.logits_s, b.z_s, b.logits_t, b.z_t, dann_coefficient(b.progress, gamma),
                               entropy_conditioning=entropy_conditioning, projector=d.projector)
        return value, {"domain_accuracy": acc}

    return Method({"discriminator": disc}, loss)


@METHODS.register("cdan", adversarial=True, summary="conditional adversarial: the discriminator sees features x predictions",
                  paper="Long et al., Conditional Adversarial Domain Adaptation, NeurIPS 2018",
                  reference="thuml/Transfer-Learning-Library tllib/alignment/cdan.py @ c4aa59e")
def cdan(dim: int, num_classes: int, seed: int = 0, hidden: int = 1024, gamma: float = 10.0,
         randomized_dim: int = 1024) -> Method:
    """The multilinear map of the bottleneck features and the (stopped-gradient) predictions, projected at random to
    ``randomized_dim`` when dim x classes exceeds 4,096."""
    return _cdan(dim, num_classes, seed, hidden, gamma, randomized_dim, entropy_conditioning=False)


@METHODS.register("cdan_e", adversarial=True, summary="CDAN with entropy conditioning: confident examples weigh more",
                  paper="Long et al., NeurIPS 2018 (CDAN+E)",
                  reference="thuml/Transfer-Learning-Library tllib/alignment/cdan.py @ c4aa59e")
def cdan_e(dim: int, num_classes: int, seed: int = 0, hidden: int = 1024, gamma: float = 10.0,
           randomized_dim: int = 1024) -> Method:
    """CDAN with each example weighted by 1 + e^(−H(p)), normalised to mean 1 over the batch."""
    return _cdan(dim, num_classes, seed, hidden, gamma, randomized_dim, entropy_conditioning=True)


@METHODS.register("mcc", summary="minimum class confusion on target predictions (no discriminator)",
                  paper="Jin et al., Minimum Class Confusion for Versatile Domain Adaptation, ECCV 2020",
                  reference="thuml/Transfer-Learning-Library tllib/self_training/mcc.py @ c4aa59e")
def mcc(dim: int, num_classes: int, seed: int = 0, temperature: float = 2.5) -> Method:
    """The confusion between classes in the target predictions (temperature ``temperature``, entropy-weighted
    examples, column-normalised), off the diagonal, divided by K."""
    from ._losses import mcc_loss

    def loss(b: Batch, mods: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        return mcc_loss(b.logits_t, temperature), {}

    return Method({}, loss)
