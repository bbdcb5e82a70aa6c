"""Distillation as an objective of the one loop: the student (trained) beside frozen teachers (and, for kl_dp, the
student's frozen starting point and, for ``feature``, a learned projector); each step turns the teachers' logits into
soft targets by the method and adds the labels' cross-entropy where it has one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..models import HeadInputTap
from ..train import Objective, StepContext
from ._methods import Method, Targets

FeatureTap = HeadInputTap  # the pooled features a hint loss reads


def teacher_name(k: int) -> str:
    return f"teacher{k}"


class Distillation(Objective):
    """``modules``: ``model`` (the student), ``teacher0``... (frozen), ``start`` (frozen, kl_dp), ``projector``
    (feature). ``keys``: each teacher's input key in the batch; ``orders``: each teacher's output columns in the
    data's class order (None: as is); ``weights``: the teachers' mixing weights."""

    def __init__(self, method_name: str, method: Method, *, keys: Sequence[str], orders: Sequence[Any],
                 weights: Sequence[float], options: Mapping[str, Any] | None = None) -> None:
        self.method_name, self.method = method_name, method
        self.keys, self.orders, self.weights = list(keys), list(orders), [float(w) for w in weights]
        self.options = dict(options or {})
        self._taps: dict[str, FeatureTap] = {}

    def setup(self, modules: Mapping[str, Any], device: Any) -> None:
        if self.method.feature_weight > 0 and not self._taps:
            self._taps = {"model": FeatureTap(modules["model"]), "teacher0": FeatureTap(modules["teacher0"])}

    def trainable(self, modules: Mapping[str, Any]) -> list[Any]:
        out = [p for p in modules["model"].parameters() if p.requires_grad]
        if "projector" in modules:
            out += list(modules["projector"].parameters())
        return out

    def teacher_logits(self, batch: Mapping[str, Any], modules: Mapping[str, Any]) -> list[Any]:
        import torch

        out = []
        with torch.no_grad():
            for k, (key, order) in enumerate(zip(self.keys, self.orders, strict=True)):
                z = modules[teacher_name(k)](batch[key]).float()
                out.append(z if order is None else z[:, torch.as_tensor(order, device=z.device)])
        return out

    def step(self, batch: Any, modules: Mapping[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Any]]:
        import torch

        from ._losses import hard_ce, hint_loss, kd_loss, soft_kl

        x, y = batch["x"], batch["y"]
        z_s = modules["model"](x)
        f_s = self._taps["model"].value if self._taps else None
        z_t = self.teacher_logits(batch, modules)
        f_t = self._taps["teacher0"].value if self._taps else None
        start = None
        if self.method.needs_start:
            with torch.no_grad():
                start = modules["start"](x).float()
        p_t, logs = self.method.targets(Targets(z_t, start, y, self.weights))
        m = self.method
        loss = kd_loss(z_s, p_t, y, m.temperature, m.kd_weight)
        labelled = y >= 0
        logs = {**logs, "kl": soft_kl(z_s.detach(), p_t, m.temperature)}
        if bool(labelled.any()):
            logs["accuracy"] = (int((z_s.detach()[labelled].argmax(1) == y[labelled]).sum()), int(labelled.sum()))
            logs["ce"] = hard_ce(z_s.detach(), y)
        if m.feature_weight > 0:
            hint = hint_loss(f_s, f_t, modules["projector"])
            loss = loss + m.feature_weight * hint
            logs["hint"] = hint.detach()
        return loss, logs

    def evaluate(self, batch: Any, modules: Mapping[str, Any]) -> dict[str, Any]:
        import torch.nn.functional as F  # noqa: N812

        from ..train import accuracy

        logits = modules["model"](batch["x"])
        return {"loss": F.cross_entropy(logits.float(), batch["y"]), "accuracy": accuracy(logits, batch["y"])}

    def close(self) -> None:
        for tap in self._taps.values():
            tap.remove()
        self._taps = {}

    def config(self) -> dict[str, Any]:
        # weights rounded: a score that differs in its last bits must not refuse a resume
        return {"method": self.method_name, "weights": [round(w, 6) for w in self.weights], **self.options}
