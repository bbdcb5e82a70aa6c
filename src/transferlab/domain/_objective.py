"""Domain adaptation as an objective of the one loop: paired (source, target) batches, the source cross-entropy plus
``trade_off`` x the method's transfer loss, and once per epoch the label-free selectors (and, where the target has
labels, the oracle accuracy: reported, never used)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..train import Objective, StepContext, accuracy
from ._guard import Guard
from ._methods import Batch, Method
from ._selectors import SELECTORS, Evidence


class DomainAdaptation(Objective):
    """``modules["model"]``: a network whose classifier is a :class:`~transferlab.models.BottleneckHead`; the
    method's modules beside it. ``target_eval``: un-augmented target examples (labels unused) the selectors score;
    ``source_eval``: the labelled source hold-out (validation data too); ``oracle``: labelled target examples or
    None. ``backbone_lr_scale``: the backbone's learning rate relative to the head's and the discriminator's (0.1, as
    the references). ``label_smoothing``: of the source cross-entropy (SHOT's source stage uses 0.1). ``sam``: ρ of
    sharpness-aware minimisation on the task loss (SDAT; None: plain steps); ``weighting``: ``fixed`` (the
    cross-entropy + ``trade_off`` x the transfer loss) or ``pareto`` (:mod:`._weighting`)."""

    def __init__(self, method_name: str, method: Method, *, trade_off: float, selectors: Iterable[str], select: str,
                 target_eval: Any, source_eval: Any, oracle: Any = None, batch_size: int = 64, seed: int = 0,
                 backbone_lr_scale: float = 0.1, options: Mapping[str, Any] | None = None,
                 label_smoothing: float = 0.0, sam: float | None = None, weighting: str = "fixed") -> None:
        self.method_name, self.method, self.trade_off = method_name, method, float(trade_off)
        self.label_smoothing, self.sam, self.weighting = float(label_smoothing), sam or None, weighting
        self.selectors = list(selectors)
        self.select = ("val_accuracy", True) if select == "source_val" else (select, True)
        self.target_eval, self.source_eval, self.oracle = target_eval, source_eval, oracle
        self.batch_size, self.seed, self.backbone_lr_scale = batch_size, seed, float(backbone_lr_scale)
        self.options = dict(options or {})
        self.guard = Guard(keep_weights=select == "guarded")

    def trainable(self, modules: Mapping[str, Any]) -> list[Any]:
        net = modules["model"]
        head = {id(p) for p in net.get_classifier().parameters()}
        out = [(p, 1.0 if id(p) in head else self.backbone_lr_scale) for p in net.parameters() if p.requires_grad]
        for name, m in modules.items():
            if name != "model":
                out += [(p, 1.0) for p in m.parameters() if p.requires_grad]
        return out

    def step(self, batch: Any, modules: Mapping[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Any]]:
        import torch
        import torch.nn.functional as F  # noqa: N812

        net = modules["model"]
        xs, ys, xt = batch["source"]["x"], batch["source"]["y"], batch["target"]["x"]
        x, n = torch.cat([xs, xt]), len(xs)  # one pass: batch norms see both domains, as the references
        if self.sam:
            from ._weighting import sam_step

            params = [p for p, _ in self.trainable(modules)]
            own = {id(p) for p in net.parameters()}

            def full() -> tuple[Any, dict[str, Any]]:
                ce, transfer, _, logs = self._parts(net, modules, x, n, ys, ctx)
                return ce + self.trade_off * transfer if transfer is not None else ce, logs

            return sam_step(lambda: F.cross_entropy(net(x)[:n].float(), ys, label_smoothing=self.label_smoothing),
                            full, [p for p in params if id(p) in own], [p for p in params if id(p) not in own],
                            self.sam)
        ce, transfer, logits_t, logs = self._parts(net, modules, x, n, ys, ctx)
        plain = ce if transfer is None else ce + self.trade_off * transfer
        if self.weighting == "pareto":
            from ._losses import information_maximisation_loss
            from ._weighting import pareto_step

            head = {id(p) for p in net.get_classifier().parameters()}
            params = [p for p, _ in self.trainable(modules)]
            own = {id(p) for p in net.parameters()}
            shared = [p for p in params if id(p) in own and id(p) not in head]  # the backbone
            half = max(1, len(logits_t) // 2)  # the target objective on one half, its guide on the other
            objectives = [ce, *([transfer] if transfer is not None else []),
                          information_maximisation_loss(logits_t[:half])]
            value, extra = pareto_step(objectives, information_maximisation_loss(logits_t[half:]), plain, shared,
                                       [p for p in params if id(p) not in {id(q) for q in shared}])
            return value, {**logs, **extra}
        return plain, logs

    def _parts(self, net: Any, modules: Mapping[str, Any], x: Any, n: int, ys: Any,
               ctx: StepContext) -> tuple[Any, Any, Any, dict[str, Any]]:
        """(source cross-entropy, transfer loss or None, target logits, logs) of one forward pass."""
        import torch.nn.functional as F  # noqa: N812

        logits = net(x)
        z = net.get_classifier().last_features
        ce = F.cross_entropy(logits[:n].float(), ys, label_smoothing=self.label_smoothing)
        logs: dict[str, Any] = {"accuracy": accuracy(logits[:n], ys), "source_loss": ce.detach()}
        if self.method.loss is None:
            return ce, None, logits[n:].float(), logs
        transfer, extra = self.method.loss(Batch(z[:n], z[n:], logits[:n].float(), logits[n:].float(), ctx.progress),
                                           dict(modules))
        logs.update({"transfer_loss": transfer.detach(), **extra})
        return ce, transfer, logits[n:].float(), logs

    def evaluate(self, batch: Any, modules: Mapping[str, Any]) -> dict[str, Any]:
        import torch.nn.functional as F  # noqa: N812

        logits = modules["model"](batch["x"])
        return {"loss": F.cross_entropy(logits.float(), batch["y"]), "accuracy": accuracy(logits, batch["y"])}

    def epoch_scores(self, modules: Mapping[str, Any], device: Any) -> dict[str, float]:
        net = modules["model"]
        probs_t, z_t, _ = predict_with_features(net, self.target_eval, self.batch_size, device)
        probs_s = z_s = y_s = None
        if self.source_eval is not None:
            probs_s, z_s, y_s = predict_with_features(net, self.source_eval, self.batch_size, device)
        self.last_target = (probs_t, z_t)
        source_acc = None if y_s is None or not len(y_s) else float(np.mean(probs_s.argmax(1) == y_s))
        ev = Evidence(probs_t, z_t, final_linear(net).weight.detach().cpu().double().numpy(), probs_s, y_s,
                      z_s, self.seed, reference=self.guard.observe(net, probs_t, source_acc))
        out: dict[str, float] = {}
        for name in self.selectors:
            for part, v in SELECTORS.get(name)(ev).items():
                out[name if part == "score" else f"{name}.{part}"] = float(v)
        if not np.isfinite(out.get(self.select[0], 0.0)):
            del out[self.select[0]]  # undefined or not passing (guarded): the loop does not keep this epoch
        if self.oracle is not None:
            out["oracle_accuracy"] = self.oracle_accuracy(net, device)
        return out

    def oracle_accuracy(self, net: Any, device: Any) -> float:
        probs_o, _, y_o = predict_with_features(net, self.oracle, self.batch_size, device)
        return float(np.mean(probs_o.argmax(1) == y_o))

    def state_dict(self) -> dict[str, Any]:
        """The guard's reference and the method's carried state (banks, pseudo-labels): a resumed run goes on with
        them."""
        out: dict[str, Any] = {"guard": self.guard.state_dict()}
        if self.method.state is not None:
            out["method"] = self.method.state.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.guard.load_state_dict(state.get("guard") or {})
        if self.method.state is not None and state.get("method") is not None:
            self.method.state.load_state_dict(state["method"])

    def config(self) -> dict[str, Any]:
        out = {"method": self.method_name, "trade_off": self.trade_off, "select": self.select[0],
               "selectors": self.selectors, "backbone_lr_scale": self.backbone_lr_scale, **self.options}
        # each absent at its default: the checkpoints of runs before the option still resume
        if self.label_smoothing:
            out["label_smoothing"] = self.label_smoothing
        if self.sam:
            out["sam"] = self.sam
        if self.weighting != "fixed":
            out["weighting"] = self.weighting
        return out


def predict_with_features(net: Any, data: Any, batch_size: int, device: Any) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """(probabilities [N, K], bottleneck features [N, d], labels [N]) of ``data`` in eval mode (the one inference
    loop, :func:`transferlab.models.infer`; the bottleneck features are what the head's classifier receives).
    ``device``: where ``net`` is (the loop's)."""
    from ..models import infer

    r = infer(net, data, batch_size, probs=True, features=final_linear(net), check_finite=False)
    assert r.features is not None
    return r.outputs, r.features, r.labels


def final_linear(net: Any) -> Any:
    """The network's last linear layer: the bottleneck head's ``fc``, or the classifier itself (a fit output's)."""
    import torch

    head = net.get_classifier()
    fc = getattr(head, "fc", head)
    if not isinstance(fc, torch.nn.Linear):
        from ..errors import TransferlabError

        raise TransferlabError(f"the classifier of {type(net).__name__} is a {type(fc).__name__}, not a linear layer: "
                               "domain adaptation reads the features a linear classifier receives")
    return fc


def logits_and_features(net: Any, x: Any) -> tuple[Any, Any]:
    """(logits, the features the final linear layer received, with their gradient) of one forward pass."""
    seen: dict[str, Any] = {}
    hook = final_linear(net).register_forward_pre_hook(lambda m, inputs: seen.__setitem__("z", inputs[0]))
    try:
        logits = net(x)
    finally:
        hook.remove()
    return logits, seen["z"]


class SourceFreeAdaptation(DomainAdaptation):
    """The target alone, from a trained source model: each step is the method's loss on a target batch (no source
    batch, no source hold-out: the selectors that need one are undefined). Before the first step and after every
    epoch the method's ``on_target`` sees the whole target's predictions and features in eval mode. The classifier
    is frozen where the method says so; the backbone learns at ``backbone_lr_scale`` x the head's rate."""

    def __init__(self, method_name: str, method: Method, *, selectors: Iterable[str], select: str, target_eval: Any,
                 oracle: Any = None, batch_size: int = 64, seed: int = 0, backbone_lr_scale: float = 0.1,
                 options: Mapping[str, Any] | None = None) -> None:
        super().__init__(method_name, method, trade_off=1.0, selectors=selectors, select=select,
                         target_eval=target_eval, source_eval=None, oracle=oracle, batch_size=batch_size, seed=seed,
                         backbone_lr_scale=backbone_lr_scale, options=options)
        self._refresh = True
        self.last_target: tuple[Any, Any] | None = None

    def setup(self, modules: Mapping[str, Any], device: Any) -> None:
        """The source model before adaptation (epoch 0): the guard's reference, and the source-only accuracy."""
        net = modules["model"]
        probs, _, _ = predict_with_features(net, self.target_eval, self.batch_size, device)
        self.guard.start(net, probs, self.oracle_accuracy(net, device) if self.oracle is not None else None)

    def trainable(self, modules: Mapping[str, Any]) -> list[Any]:
        net = modules["model"]
        frozen = {id(p) for p in final_linear(net).parameters()} if self.method.frozen_classifier else set()
        head = {id(p) for p in net.get_classifier().parameters()}
        return [(p, 1.0 if id(p) in head else self.backbone_lr_scale) for p in net.parameters()
                if p.requires_grad and id(p) not in frozen]

    def step(self, batch: Any, modules: Mapping[str, Any], ctx: StepContext) -> tuple[Any, dict[str, Any]]:
        net = modules["model"]
        if self._refresh and self.method.on_target is not None:
            probs, z, _ = predict_with_features(net, self.target_eval, self.batch_size, None)
            self.method.on_target(probs, z)
        self._refresh = False
        logits, z = logits_and_features(net, batch["x"])  # the target's labels are never read
        assert self.method.loss is not None
        loss, extra = self.method.loss(Batch(None, z, None, logits.float(), ctx.progress, batch["index"]),
                                       dict(modules))
        return loss, {"transfer_loss": loss.detach(), **extra}

    def evaluate(self, batch: Any, modules: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def end_epoch(self, modules: Mapping[str, Any], ctx: StepContext, row: dict[str, float]) -> None:
        # SHOT's pseudo-labels: recomputed from the model of the epoch that ended (its scores' target pass)
        if self.method.on_target is not None and self.last_target is not None:
            self.method.on_target(*self.last_target)
            self._refresh = False
        else:
            self._refresh = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "refresh": self._refresh}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._refresh = bool(state.get("refresh", True))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "source_free": True}
