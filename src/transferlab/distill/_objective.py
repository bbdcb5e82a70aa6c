"""Distillation as an objective of the one loop: the student (trained) beside frozen teachers and the modules its
method asks for; each step hands the student's and the teachers' logits, the labels and the step context to the
method's loss. No method-specific branch lives here: a method is its modules and its loss (``_methods``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..models import HeadInputTap
from ..train import Objective, StepContext
from ._methods import Method, Step

FeatureTap = HeadInputTap  # the pooled features a method's loss reads


def teacher_name(k: int) -> str:
    return f"teacher{k}"


class Distillation(Objective):
    """``modules``: ``model`` (the student), ``teacher0``... (frozen), and the method's own (e.g. ``start``,
    frozen; ``projector``, trained). ``keys``: each teacher's input key in the batch; ``orders``: each teacher's
    output columns in the data's class order (None: as is); ``weights``: the teachers' mixing weights."""

    def __init__(self, method_name: str, method: Method, *, keys: Sequence[str], orders: Sequence[Any],
                 weights: Sequence[float], options: Mapping[str, Any] | None = None) -> None:
        self.method_name, self.method = method_name, method
        self.keys, self.orders, self.weights = list(keys), list(orders), [float(w) for w in weights]
        self.options = dict(options or {})
        self._taps: dict[str, FeatureTap] = {}
        self.last_state: dict[str, Any] | None = None  # the student's weights after the latest epoch (on the CPU)

    def setup(self, modules: Mapping[str, Any], device: Any) -> None:
        if not self._taps:
            self._taps = {name: FeatureTap(modules[name]) for name in self.method.taps}

    def trainable(self, modules: Mapping[str, Any]) -> list[Any]:
        """The student's parameters, then those of the method's trained modules."""
        teachers = {teacher_name(k) for k in range(len(self.keys))}
        out = [p for p in modules["model"].parameters() if p.requires_grad]
        for name, m in modules.items():
            if name != "model" and name not in teachers:
                out += [p for p in m.parameters() if p.requires_grad]
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
        from ._losses import hard_ce

        x, y = batch["x"], batch["y"]
        z_s = modules["model"](x)
        z_t = self.teacher_logits(batch, modules)
        features = {name: tap.value for name, tap in self._taps.items()}
        loss, logs = self.method.loss(Step(x, z_s, z_t, y, self.weights, ctx, features), modules)
        labelled = y >= 0
        if bool(labelled.any()):
            logs["accuracy"] = (int((z_s.detach()[labelled].argmax(1) == y[labelled]).sum()), int(labelled.sum()))
            logs["ce"] = hard_ce(z_s.detach(), y)
        return loss, logs

    def evaluate(self, batch: Any, modules: Mapping[str, Any]) -> dict[str, Any]:
        import torch.nn.functional as F  # noqa: N812

        from ..train import accuracy

        logits = modules["model"](batch["x"])
        return {"loss": F.cross_entropy(logits.float(), batch["y"]), "accuracy": accuracy(logits, batch["y"])}

    def end_epoch(self, modules: Mapping[str, Any], ctx: StepContext, row: dict[str, float]) -> None:
        """Keep the student's weights as this epoch left them: the loop restores the selected epoch's at the end,
        and the report gives the last epoch's test accuracy beside it."""
        self.last_state = {k: v.detach().to("cpu", copy=True) for k, v in modules["model"].state_dict().items()}

    def close(self) -> None:
        for tap in self._taps.values():
            tap.remove()
        self._taps = {}

    def config(self) -> dict[str, Any]:
        # weights rounded: a score that differs in its last bits must not refuse a resume
        return {"method": self.method_name, "weights": [round(w, 6) for w in self.weights], **self.options}
