"""BlackVIP: black-box visual prompting (Oh et al., "BlackVIP: Black-Box Visual Prompting for Robust Transfer
Learning", CVPR 2023; reference: changdaeoh/BlackVIP @ 66606fb, ``trainers/blackvip.py``,
``trainers/visual_prompters.py``).

The model being adapted is a black box: training calls only :meth:`BlackBox.predict_proba` (class probabilities of
a batch, under ``torch.inference_mode``: no gradient, no weight is read or changed). A coordinator
(:class:`transferlab.models.Coordinator`: a frozen encoder, a learnable trigger, a decoder) produces an
input-dependent prompt added to each image; its trigger and decoder are trained by zeroth-order optimisation:

- ``spsa``: simultaneous perturbation stochastic approximation: ``g = (L(w + c d) - L(w - c d)) / (2 c d)``,
  averaged over ``sp_avg`` perturbations ``d`` (the reference's segmented uniform: each entry +-U[0.5, 1]), step
  ``w -= a_t g``; gains ``a_t = a / (t + o)^alpha`` (``a`` is ``--lr``), ``c_t = c / t^gamma``;
- ``spsa_gc`` (default): SPSA with gradient correction, the reference's Nesterov form ``m = beta m + g``,
  ``w -= a_t (g + beta m)``;
- ``backprop``: the same coordinator trained with gradients through the (then white-box) model, by the loop's AdamW:
  visual-prompt tuning with gradients, the baseline BlackVIP is measured against.

Every image sent to the black box is a query; ``metrics.json`` records ``queries_train`` (training steps) and
``queries_eval`` (validation), and ``query_budget`` caps the training queries. The updates run as an objective of the
one training loop (epochs, validation, best-epoch selection, checkpoints); for the zeroth-order estimators the loop's
optimiser sees zero gradients and no weight decay, so it moves nothing: the objective's SPSA step is the update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import TransferlabError
from ..train import Objective
from ._registry import METHODS, FitContext, Outcome, Prepared, TrainJob

ESTIMATORS = ("spsa_gc", "spsa", "backprop")


class BlackBox:
    """A classifier used only through :meth:`predict_proba`; counts the images it was asked about."""

    def __init__(self, net: Any) -> None:
        self._net = net
        self.queries = 0
        self.calls = 0

    def to(self, device: Any) -> BlackBox:
        self._net.to(device)
        return self

    def predict_proba(self, x: Any) -> Any:
        """Class probabilities ``[B, C]`` of the images ``x``: the API's only answer."""
        import torch

        self.queries += len(x)
        self.calls += 1
        with torch.inference_mode():
            self._net.eval()
            return torch.softmax(self._net(x).float(), 1).clone()


def nll(proba: Any, y: Any) -> Any:
    """Cross-entropy from probabilities (what a black box returns)."""
    import torch

    return -torch.log(proba.gather(1, y.view(-1, 1)).clamp_min(1e-12)).mean()


def perturbation(n: int, generator: Any = None, device: Any = None) -> Any:
    """The reference's SPSA perturbation: each entry +-U[0.5, 1], the sign a fair coin."""
    import torch

    mag = (torch.rand(n, generator=generator, device=device) + 1) / 2
    sign = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    return mag * sign


def spsa_gradient(loss: Callable[[Any], Any], w: Any, c: float, n: int = 1,
                  generator: Any = None) -> tuple[Any, float]:
    """Two-sided SPSA estimate of the gradient of ``loss`` at ``w``, averaged over ``n`` perturbations (2n loss
    evaluations); returns (estimate, mean of the evaluated losses)."""
    import torch

    g, total = torch.zeros_like(w), 0.0
    for _ in range(n):
        d = perturbation(len(w), generator, generator.device if generator is not None else w.device).to(w)
        lp, lm = float(loss(w + c * d)), float(loss(w - c * d))
        g += (lp - lm) / (2 * c * d)
        total += lp + lm
    return g / n, total / (2 * n)


@dataclass
class Spsa:
    """SPSA / SPSA-GC with the reference's gain schedules (its configs: a = c = 0.01, o = 1, alpha = 0.4,
    gamma = 0.1, beta = 0.9, sp_avg = 5); ``t`` and ``m`` are its state."""

    a: float = 0.01
    c: float = 0.01
    o: float = 1.0
    alpha: float = 0.4
    gamma: float = 0.1
    beta: float = 0.9
    sp_avg: int = 5
    gc: bool = True
    t: int = 0
    m: Any = None

    def step(self, loss: Callable[[Any], Any], w: Any, generator: Any = None) -> tuple[Any, float]:
        """One update of ``w`` (2 sp_avg loss evaluations); returns (new w, mean loss at the perturbed points)."""
        self.t += 1
        ak = self.a / (self.t + self.o) ** self.alpha
        ck = self.c / self.t ** self.gamma
        g, value = spsa_gradient(loss, w, ck, self.sp_avg, generator)
        if self.gc:
            self.m = g if self.m is None else self.beta * self.m + g
            g = g + self.beta * self.m
        return w - ak * g, value


def _flat(params: list[Any]) -> Any:
    import torch

    return torch.cat([p.detach().reshape(-1) for p in params])


def _assign_(params: list[Any], w: Any) -> None:
    import torch

    with torch.no_grad():
        o = 0
        for p in params:
            p.copy_(w[o:o + p.numel()].view_as(p))
            o += p.numel()


class BlackVIPObjective(Objective):
    """Trains the coordinator (module ``coordinator``) against a :class:`BlackBox` (or, for ``backprop``, through
    the network with gradients)."""

    def __init__(self, black_box: BlackBox, net: Any, estimator: str, spsa: Spsa, budget: int | None) -> None:
        self.black_box, self.net, self.estimator, self.spsa, self.budget = black_box, net, estimator, spsa, budget
        self.queries_train = 0
        self.queries_eval = 0
        self._last = 0.0

    def setup(self, modules: Any, device: Any) -> None:
        self.black_box.to(device)
        self.net.eval()  # frozen: its batch norms keep their statistics (backprop reaches only the coordinator)

    def trainable(self, modules: Any) -> list[Any]:
        return modules["coordinator"].trained()

    def _ask(self, x: Any) -> Any:
        before = self.black_box.queries
        p = self.black_box.predict_proba(x)
        return p, self.black_box.queries - before

    def step(self, batch: Any, modules: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
        from ..train import accuracy

        coord, x, y = modules["coordinator"], batch["x"], batch["y"]
        z = coord.features(x)
        if self.estimator == "backprop":  # white-box visual prompting: gradients through the network
            logits = self.net(coord(x, z))
            return _ce(logits, y), {"accuracy": accuracy(logits, y)}
        params = coord.trained()
        acc: tuple[int, int] = (0, 0)  # a step the budget skips adds nothing to the epoch's training accuracy
        if self.budget is None or self.queries_train + 2 * self.spsa.sp_avg * len(x) <= self.budget:
            def loss(w: Any) -> Any:
                nonlocal acc
                _assign_(params, w)
                p, n = self._ask(coord(x, z))
                self.queries_train += n
                acc = accuracy(p, y)  # of the last perturbed query
                return nll(p, y)

            import torch

            with torch.no_grad():
                w, self._last = self.spsa.step(loss, _flat(params), ctx.generator)
                _assign_(params, w)
        # the loop's optimiser sees a zero gradient (and no weight decay): the SPSA step above is the update
        return sum(p.sum() for p in params) * 0.0 + self._last, {"accuracy": acc}

    def evaluate(self, batch: Any, modules: Any) -> dict[str, Any]:
        from ..train import accuracy

        p, n = self._ask(modules["coordinator"](batch["x"]))
        self.queries_eval += n
        return {"loss": nll(p, batch["y"]), "accuracy": accuracy(p, batch["y"])}

    def config(self) -> dict[str, Any]:
        s = self.spsa
        return {"method": "blackvip", "estimator": self.estimator, "budget": self.budget, "a": s.a, "c": s.c,
                "o": s.o, "alpha": s.alpha, "gamma": s.gamma, "beta": s.beta, "sp_avg": s.sp_avg}

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.spsa.t, "m": self.spsa.m, "queries_train": self.queries_train,
                "queries_eval": self.queries_eval, "last": self._last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.spsa.t, self.spsa.m = int(state["t"]), state["m"]
        self.queries_train, self.queries_eval = int(state["queries_train"]), int(state["queries_eval"])
        self._last = float(state["last"])


def _ce(logits: Any, y: Any) -> Any:
    import torch

    return torch.nn.functional.cross_entropy(logits.float(), y)


def _coordinator(ctx: FitContext, encoder: str | None, eps: float) -> tuple[Any, dict[str, Any]]:
    """The coordinator with a fresh pretrained copy of ``encoder`` (default: the fitted model's reference)."""
    import torch

    from ..models import Coordinator, architecture_of, pretrained, prompter_structure

    enc = pretrained(encoder or ctx.backbone.ref, 0)
    size = int(ctx.image_size or 32)
    enc.eval()
    with torch.no_grad():
        dim = int(enc(torch.zeros(1, 3, size, size)).flatten(1).shape[1])
    mean, std = tuple(ctx.backbone.mean), tuple(ctx.backbone.std)
    lo = tuple((0 - m) / s for m, s in zip(mean, std, strict=True))
    hi = tuple((1 - m) / s for m, s in zip(mean, std, strict=True))
    coord = Coordinator(enc, dim, lo, hi, eps)
    return coord, prompter_structure(coord, architecture_of(enc), dim)


@METHODS.register("blackvip", summary="black-box visual prompting: a coordinator's input-dependent prompt, trained "
                  "by SPSA-GC through predict_proba queries only", default_lr=1e-4,
                  paper="Oh et al., BlackVIP, CVPR 2023", reference="changdaeoh/BlackVIP @ 66606fb")
def blackvip(model: Any, ctx: FitContext, estimator: str = "spsa_gc", query_budget: int | None = None,
             sp_avg: int = 5, spsa_c: float = 0.01, eps: float = 1.0, encoder: str | None = None) -> Prepared:
    """The model (``--model``, with ``--init`` a fitted classifier of the target's classes) is the black box: it
    keeps its head and its weights; the coordinator trains in front of it. ``estimator``: ``spsa_gc``, ``spsa`` or
    ``backprop`` (the white-box baseline); ``--lr`` is SPSA's gain ``a`` (default 1e-4, measured for SPSA-GC on
    digits-m; the reference's 0.01 diverged there) or AdamW's rate for ``backprop`` (give it, e.g. 1e-2);
    ``query_budget``: images sent to the black box during training; ``sp_avg``: perturbations per step;
    ``spsa_c``: the perturbation size ``c``; ``eps``: the prompt's bound (normalised pixels); ``encoder``: the
    coordinator's frozen encoder (a model reference; default ``--model``'s pretrained network)."""
    if estimator not in ESTIMATORS:
        raise TransferlabError(f"blackvip: estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if query_budget is not None and query_budget < 2 * sp_avg:
        raise TransferlabError(f"blackvip: query_budget {query_budget} is below one SPSA step's 2 x sp_avg queries")
    if sp_avg < 1 or not spsa_c > 0 or not eps > 0:
        raise TransferlabError("blackvip: sp_avg must be >= 1, spsa_c and eps > 0")
    if getattr(ctx.backbone, "modality", "image") != "image":
        raise TransferlabError("blackvip prompts images: choose an image model")
    for p in model.parameters():
        p.requires_grad_(False)
    coord, structure = _coordinator(ctx, encoder, eps)

    def run(prep: Prepared, job: TrainJob) -> Outcome:
        from ..models import install_prompter_
        from ..train import train

        spsa = Spsa(a=job.config.lr, c=spsa_c, sp_avg=sp_avg, gc=estimator == "spsa_gc")
        obj = BlackVIPObjective(BlackBox(model), model, estimator, spsa, query_budget)
        cfg = job.config
        if estimator != "backprop":
            epochs = cfg.epochs
            if query_budget is not None:  # no epoch that could not take a step
                per_epoch = 2 * sp_avg * len(job.train_data)
                epochs = max(1, min(epochs, math.ceil(query_budget / per_epoch)))
            cfg = cfg.model_copy(update={"weight_decay": 0.0, "epochs": epochs})
        result = train({"coordinator": coord}, obj, job.train_data, cfg, val_data=job.val_data,
                       progress=job.progress, checkpoint_dir=job.checkpoint_dir)
        coord.to(next(model.parameters()).device)
        install_prompter_(model, coord).eval()
        prep.params = coord.trained()
        prep.metrics.update(queries_train=obj.queries_train, queries_eval=obj.queries_eval,
                            queries=obj.queries_train + obj.queries_eval, estimator=estimator,
                            query_budget=query_budget, spsa_steps=spsa.t)
        return Outcome(result.history, result.best_val_accuracy)

    return Prepared(model, [], structure=structure, run=run)
