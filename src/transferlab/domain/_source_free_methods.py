"""Source-free domain adaptation methods: a trained source model adapts on the unlabelled target alone (no source
data). Each is a :class:`~._methods.Method` whose loss is the whole objective, with an ``on_target`` hook that sees
the whole target's predictions and classifier-input features in eval mode (pseudo-labels, feature and score banks).

Checked against the reference implementations (read, not copied): tim-learn/SHOT ``object/image_target.py`` @
f7d555a, Albert0147/NRC_SFDA ``train_tar.py`` @ e5e3bfa, Albert0147/AaD_SFDA ``tar_adaptation.py`` @ cb5567c.
"""

from __future__ import annotations

from typing import Any

from ._methods import METHODS, Batch, Method

SHOT_REF = "tim-learn/SHOT object/image_target.py @ f7d555a"


@METHODS.register("shot", source_free=True, summary="source-free: information maximisation + pseudo-labels from "
                  "target centroids, the source classifier frozen",
                  paper="Liang et al., Do We Really Need to Access the Source Data? (SHOT), ICML 2020",
                  reference=SHOT_REF)
def shot(dim: int, num_classes: int, seed: int = 0, pseudo_label_weight: float = 0.3,
         pseudo_labels: bool = True, threshold: int = 0) -> Method:
    """Entropy of each prediction − entropy of the mean prediction, + ``pseudo_label_weight`` x cross-entropy
    against pseudo-labels recomputed every epoch from prediction-weighted centroids of the target features (cosine
    distance, one refinement with hard labels). ``pseudo_labels=False``: SHOT-IM."""
    import numpy as np
    import torch

    from ._losses import shot_loss, shot_pseudo_labels

    state = _State(labels=None)

    def on_target(probs: Any, features: Any) -> None:
        if pseudo_labels:
            state.labels = torch.as_tensor(shot_pseudo_labels(probs, features, threshold), dtype=torch.long)

    def loss(b: Batch, mods: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        labels = state.labels
        pseudo = None if labels is None else labels[b.index_t.cpu()].to(b.logits_t.device)
        value = shot_loss(b.logits_t, pseudo, pseudo_label_weight)
        logs = {}
        if pseudo is not None:
            logs["pseudo_agreement"] = float(np.mean((b.logits_t.argmax(1) == pseudo).cpu().numpy()))
        return value, logs

    return Method({}, loss, on_target=on_target, frozen_classifier=True, state=state)


class _State:
    """Named tensors a method carries across steps; its ``state_dict`` is what a checkpoint keeps (on the CPU)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def state_dict(self) -> dict[str, Any]:
        return {k: None if v is None else v.detach().cpu().clone() for k, v in vars(self).items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: state[k] for k in vars(self) if k in state})


class _Banks(_State):
    """The feature bank (L2-normalised classifier-input features) and score bank (predictions) over the target,
    filled once from the source model before the first step and updated with every batch (NRC, AaD)."""

    def __init__(self) -> None:
        super().__init__(features=None, scores=None)

    def fill(self, probs: Any, features: Any) -> None:
        import torch
        import torch.nn.functional as F  # noqa: N812

        if self.features is None:  # once, as the references: afterwards the batches keep the banks current
            self.features = F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=1)
            self.scores = torch.as_tensor(probs, dtype=torch.float32)

    def update(self, b: Batch) -> tuple[Any, Any]:
        """(the batch's probabilities, its normalised features) after writing them into the banks."""
        import torch.nn.functional as F  # noqa: N812

        from ._losses import update_banks_

        dev = b.z_t.device
        if self.features.device != dev:
            self.features, self.scores = self.features.to(dev), self.scores.to(dev)
        probs = F.softmax(b.logits_t, dim=1)
        z = update_banks_(b.z_t.float(), probs, b.index_t.to(dev), self.features, self.scores)
        return probs, z


@METHODS.register("nrc", source_free=True, summary="source-free: neighbourhood reciprocity clustering over target "
                  "feature and score banks", paper="Yang et al., Exploiting the Intrinsic Neighborhood Structure "
                  "for Source-free Domain Adaptation (NRC), NeurIPS 2021",
                  reference="Albert0147/NRC_SFDA train_tar.py @ e5e3bfa")
def nrc(dim: int, num_classes: int, seed: int = 0, k: int = 5, kk: int = 5, weak: float = 0.1) -> Method:
    """Each prediction pulled towards its ``k`` nearest neighbours' banked predictions (affinity 1 where reciprocal,
    ``weak`` otherwise) and their ``kk`` nearest (``weak``), plus the diversity of the batch's mean prediction."""
    from ._losses import nrc_loss

    banks = _Banks()

    def loss(b: Batch, mods: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        probs, z = banks.update(b)
        return nrc_loss(probs, z, b.index_t.to(z.device), banks.features, banks.scores, k, kk, weak), {}

    return Method({}, loss, on_target=banks.fill, state=banks)


@METHODS.register("aad", source_free=True, summary="source-free: attract the nearest neighbours' predictions, "
                  "disperse the batch's others", paper="Yang et al., Attracting and Dispersing: A Simple Approach "
                  "for Source-free Domain Adaptation (AaD), NeurIPS 2022",
                  reference="Albert0147/AaD_SFDA tar_adaptation.py @ cb5567c")
def aad(dim: int, num_classes: int, seed: int = 0, k: int = 5, alpha: float = 1.0, beta: float = 5.0) -> Method:
    """−Σ_k p·s_k over the ``k`` nearest banked neighbours + λ·Σ_(j≠i) p_i·p_j over the batch, λ = ``alpha``(1 +
    10·progress)^−``beta``."""
    from ._losses import aad_coefficient, aad_loss

    banks = _Banks()

    def loss(b: Batch, mods: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        probs, z = banks.update(b)
        lam = aad_coefficient(b.progress, alpha, beta)
        return aad_loss(probs, z, banks.features, banks.scores, k, lam), {"dispersion_weight": lam}

    return Method({}, loss, on_target=banks.fill, state=banks)
