"""Gradient projection: ``gpm`` (Saha et al., "Gradient Projection Memory for Continual Learning", ICLR 2021) and
``cuber`` (Lin et al., "Beyond Not-Forgetting: Continual Learning with Backward Knowledge Transfer", NeurIPS 2022).

After each task, every convolution (ungrouped) and linear layer of the backbone keeps a basis of the inputs it saw
on that task: the leading right singular vectors of its representation matrix (a conv's input patches, as
``unfold`` lays them out in the weight's order) that hold the ``threshold`` share of their energy. GPM grows one basis per layer by the
paper's criterion (new directions from the part of the new task's inputs the basis misses, until the basis holds
``threshold`` of the new inputs' energy); a later task's weight updates are projected out of it:
ΔW ← ΔW − ΔW M Mᵀ, so W x is unchanged for every x in span(M). The one loop's optimiser is AdamW, whose per-
coordinate scaling and weight decay would leave that span: the gradient is projected (as the paper) and so is each
step's update (``after_step``), which makes the guarantee exact for any optimiser. Every other backbone parameter
(batch norms and their statistics, biases, grouped convolutions) keeps its pretrained value: they would move every
old task's outputs. Each task trains its own head freely. With ``sgd_lr`` the projected weights leave the loop's
optimiser and ``after_step`` steps them by SGD (momentum of projected gradients stays outside the blocked span) at a
constant rate, without the loop's gradient clipping or schedule; a distributed run refuses it (the loop averages
only its own parameters' gradients).

CUBER keeps each task's own basis and, per layer, the mean gradient of the task's loss at the end of its training.
A new task trains one epoch with every old basis protected; then, per layer and old task j, the new task's gradient
there g_t is compared with j's subspace: *sufficient projection* ‖g_t M_j M_jᵀ‖ ≥ ``epsilon`` ‖g_t‖ and *positive
correlation* ⟨g_t M_j M_jᵀ, g_j⟩ > 0 (a step against g_t lowers j's loss to first order; g_j is j's stored
gradient, as no old data is kept). For those tasks the update inside span(M_j) is allowed in the remaining epochs
(backward transfer), every other old basis stays protected; each step also drops its component in an allowed
span(M_j) when that component would raise j's loss to first order (⟨ΔW M_j M_jᵀ, g_j⟩ > 0)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import TransferlabError
from ._strategies import STRATEGIES
from ._strategy import Strategy


def projected_layers(backbone: Any) -> dict[str, Any]:
    """The layers whose inputs get a basis: ungrouped convolutions and linear layers."""
    import torch

    return {n: m for n, m in backbone.named_modules()
            if isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d) and m.groups == 1)}


def _inputs_2d(mod: Any, x: Any, max_positions: int, gen: Any) -> Any:
    """A layer's input as rows in its weight's input space: a linear layer's (tokens flattened), a conv's patches
    (``unfold`` with its geometry; at most ``max_positions`` positions per example, the same seeded ones)."""
    import torch

    if isinstance(mod, torch.nn.Linear):
        return x.reshape(-1, x.shape[-1])
    cols = torch.nn.functional.unfold(x, mod.kernel_size, mod.dilation, mod.padding, mod.stride)  # B, d, L
    if cols.shape[2] > max_positions:
        cols = cols[:, :, torch.randperm(cols.shape[2], generator=gen)[:max_positions]]
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def input_rows(backbone: Any, layers: dict[str, Any], batches: Any, max_positions: int = 64,
               seed: int = 0) -> dict[str, Any]:
    """Every layer's inputs over ``batches`` (input tensors) as rows in its weight's input space (float64, n × d;
    the paper's representation matrix, transposed), the backbone in eval mode."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[Any]] = {}

    def hook(name: str) -> Any:
        def f(mod: Any, inp: Any, _out: Any) -> None:
            out.setdefault(name, []).append(_inputs_2d(mod, inp[0].detach(), max_positions, gen).double().cpu())
        return f

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            for x in batches:
                backbone(x)
    finally:
        for h in handles:
            h.remove()
        backbone.train(was)
    return {n: torch.cat(v) for n, v in out.items()}


def _principal(rows: Any) -> tuple[Any, Any]:
    """The energies (descending) and directions (d × m) of ``rows``' input space: the squared singular values and
    right singular vectors (a thin SVD when there are fewer rows than dimensions, else an eigendecomposition of the
    d × d second moment, scaled to unit trace; an SVD where the eigensolver does not converge)."""
    import torch

    if len(rows) < rows.shape[1]:
        _, sv, vt = torch.linalg.svd(rows, full_matrices=False)
        return sv ** 2, vt.T
    m = rows.T @ rows
    scale = max(float(torch.trace(m)), 1e-300)
    try:
        vals, vecs = torch.linalg.eigh(m / scale)
        return vals.flip(0).clamp_min(0) * scale, vecs.flip(1)
    except RuntimeError:
        u, sv, _ = torch.linalg.svd(m / scale)
        return sv * scale, u


def _top(vals: Any, need: float) -> int:
    """How many of the (descending) energies it takes for their sum to reach ``need``."""
    c = np.cumsum(np.clip(vals, 0, None))
    return int(min(len(c), np.searchsorted(c, need * (1 - 1e-12)) + 1)) if need > 0 else 0


def energy_basis(rows: Any, threshold: float) -> Any:
    """The leading directions of ``rows`` (n × d) that hold ``threshold`` of their energy (d × k)."""
    vals, vecs = _principal(rows)
    return vecs[:, : _top(vals.numpy(), threshold * float((rows ** 2).sum()))]


def grow_basis(basis: Any, rows: Any, threshold: float) -> Any:
    """GPM's update: the new inputs' part outside ``basis``, its leading directions added until the basis holds
    ``threshold`` of the new inputs' energy (ε‖R‖² ≤ ‖Mᵀ R‖² + Σ σ̂²)."""
    import torch

    if basis is None or basis.shape[1] == 0:
        return energy_basis(rows, threshold)
    total = float((rows ** 2).sum())
    rest = rows - (rows @ basis) @ basis.T
    vals, vecs = _principal(rest)
    k = _top(vals.numpy(), threshold * total - (total - float((rest ** 2).sum())))
    if k == 0:
        return basis
    new = vecs[:, :k] - basis @ (basis.T @ vecs[:, :k])  # orthogonal to the basis up to rounding: make it exact
    q, _ = torch.linalg.qr(torch.cat([basis, new], 1))
    return q


def union_basis(bases: list[Any], dim: int) -> Any:
    """An orthonormal basis of the span of several bases (d × k; k = 0 for none)."""
    import torch

    cols = [b for b in bases if b is not None and b.shape[1]]
    if not cols:
        return torch.zeros(dim, 0, dtype=torch.float64)
    u, s, _ = torch.linalg.svd(torch.cat(cols, 1), full_matrices=False)
    return u[:, : int((s > s[0] * 1e-10).sum())]


def project_out(delta: Any, basis: Any) -> Any:
    """``delta`` (out × d, or a conv weight's shape) without its component in span(basis): Δ − Δ M Mᵀ."""
    if basis is None or basis.shape[1] == 0:
        return delta
    m = basis.to(delta.dtype)
    d2 = delta.reshape(delta.shape[0], -1)
    return (d2 - (d2 @ m) @ m.T).reshape(delta.shape)


class GradientProjection(Strategy):
    """GPM (``backward=False``) and CUBER (``backward=True``) on the one loop."""

    def __init__(self, threshold: float, threshold_step: float, n_examples: int, backward: bool,
                 epsilon: float = 0.5, sgd_lr: float | None = None, momentum: float = 0.0) -> None:
        self.threshold, self.threshold_step, self.n_examples = threshold, threshold_step, n_examples
        self.sgd_lr, self.momentum = sgd_lr, momentum
        self._velocity: dict[str, Any] = {}
        self.backward, self.epsilon = backward, epsilon
        self.layers: dict[str, Any] = {}
        self.union: dict[str, Any] = {}  # GPM's basis per layer
        self.bases: list[dict[str, Any]] = []  # each task's own basis per layer (CUBER)
        self.grads: list[dict[str, Any]] = []  # each task's mean gradient per layer at its end (CUBER)
        self.blocked: dict[str, Any] = {}  # per layer: the span updates may not enter now
        self.allowed: dict[str, list[int]] = {}  # per layer: the old tasks whose span is open (CUBER)
        self.transfers: list[dict[str, list[int]]] = []
        self._prev: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        out = {"threshold": self.threshold, "threshold_step": self.threshold_step, "n_examples": self.n_examples,
               "sgd_lr": self.sgd_lr, "momentum": self.momentum}
        return {**out, "epsilon": self.epsilon} if self.backward else out

    def install(self, run: Any) -> None:
        from ..train import world

        if self.sgd_lr is not None and world().distributed:
            raise TransferlabError(
                f"sgd_lr steps the projected layers outside the training loop, and this run has {world().size} "
                "processes (torchrun or devices=N): their gradients would not be averaged across the processes "
                "(nor clipped or scheduled), so each process's copy would drift apart. Leave sgd_lr unset (the "
                "loop's AdamW then trains those layers, averaged across processes) or run on one process")
        backbone = run.modules["backbone"]
        self.layers = projected_layers(backbone)
        keep = {id(m.weight) for m in self.layers.values()}
        for p in backbone.parameters():
            if id(p) not in keep:
                p.requires_grad_(False)
        if not any(m.weight.requires_grad for m in self.layers.values()):
            raise TransferlabError(f"{type(backbone).__name__} has no trainable convolution or linear weight for "
                                   "gradient projection (gpm, cuber)")

    def trainable(self, run: Any, i: int, modules: Any) -> list[Any]:
        """The loop's parameters: with ``sgd_lr`` the projected weights are left out (``after_step`` steps them)."""
        ps = super().trainable(run, i, modules)
        if self.sgd_lr is None:
            return ps
        own = {id(m.weight) for m in self.layers.values()}
        return [p for p in ps if id(p) not in own]

    def train_task(self, run: Any, i: int, data: dict[str, Any], training: Any) -> list[dict[str, Any]]:
        self.blocked = {n: union_basis([t[n] for t in self.bases] if self.backward else [self.union.get(n)],
                                       _in_dim(m)) for n, m in self.layers.items()}
        self.allowed = {}
        self._prev = {n: m.weight.detach().clone() for n, m in self.layers.items()}
        if not self.backward or i == 0 or training.epochs < 2:
            return self._projected(training, run, i, data)
        h = self._projected(training, run, i, data, "protected", epochs=1)
        self.open_correlated(run, i)  # on the loss's own gradient: no projection hook meanwhile
        h2 = self._projected(training, run, i, data, "transfer", epochs=training.epochs - 1)
        return h + [{**row, "epoch": row["epoch"] + len(h), "phase": "transfer"} for row in h2]

    def _projected(self, training: Any, run: Any, i: int, data: dict[str, Any], *args: Any,
                   **config: Any) -> list[dict[str, Any]]:
        """One call of the loop with each projected weight's gradient projected out of its blocked span."""
        hooks = [m.weight.register_hook(lambda g, n=n: project_out(g, self.blocked[n]))
                 for n, m in self.layers.items() if m.weight.requires_grad]
        self._velocity = {}
        if self.sgd_lr is not None:
            config = {"precision": "fp32", **config}  # the weights it steps itself get unscaled gradients
        try:
            return training(run, i, data, *args, **config)
        finally:
            for hk in hooks:
                hk.remove()

    def after_step(self, run: Any, i: int, modules: Any) -> None:
        """Each projected layer's step, less its component in the blocked span (and, for CUBER, in an allowed old
        task's span where it would raise that task's loss to first order)."""
        import torch

        with torch.no_grad():
            for n, m in self.layers.items():
                w = m.weight
                if not w.requires_grad:
                    continue
                if self.sgd_lr is not None and w.grad is not None:  # the paper's optimiser: SGD (with momentum)
                    v = self._velocity.get(n)
                    v = w.grad.clone() if v is None else v.mul_(self.momentum).add_(w.grad)
                    self._velocity[n] = v
                    w.sub_(self.sgd_lr * v)
                    w.grad = None
                delta = project_out(w - self._prev[n], self.blocked[n])
                for j in self.allowed.get(n, []):
                    inside = delta - project_out(delta, self.bases[j][n])
                    delta = delta - inside + _descent_part(inside, self.grads[j][n])
                w.copy_(self._prev[n] + delta)
                self._prev[n] = w.detach().clone()

    def after_task(self, run: Any, i: int) -> None:
        if i == len(run.stream.tasks) - 1:
            return  # no later task to protect it from
        rows = input_rows(run.modules["backbone"], self.layers, self._sample(run, i), seed=run.seed + i)
        eps = min(1.0, self.threshold + self.threshold_step * i)
        for n, r in rows.items():
            self.union[n] = grow_basis(self.union.get(n), r, eps)
        if self.backward:
            self.bases.append({n: energy_basis(r, eps) for n, r in rows.items()})
            self.grads.append(self.mean_gradients(run, i))

    def _sample(self, run: Any, i: int, batch_size: int = 64) -> Any:
        """Up to ``n_examples`` of task ``i``'s training examples (seeded, un-augmented), in batches of inputs."""
        import torch

        n = len(run.stream.tasks[i].train)
        keep = sorted(np.random.default_rng(run.seed * 1000 + i).choice(n, min(n, self.n_examples),
                                                                         replace=False).tolist())
        dev = run.device()
        run.set_task(i)
        for b in torch.utils.data.DataLoader(run.examples([(i, j) for j in keep], augment=False), batch_size):
            yield b["x"].to(dev)

    def mean_gradients(self, run: Any, i: int, batch_size: int = 64) -> dict[str, Any]:
        """The mean over task ``i``'s sampled training batches of the gradient of its loss, per projected layer."""
        import torch

        mods = run.modules
        for m in mods.values():
            m.eval()
        ws = {n: m.weight for n, m in self.layers.items()}
        was = {n: w.requires_grad for n, w in ws.items()}
        grads = {n: torch.zeros_like(w, dtype=torch.float64) for n, w in ws.items()}
        k = 0
        n = len(run.stream.tasks[i].train)
        keep = sorted(np.random.default_rng(run.seed * 1000 + i).choice(n, min(n, self.n_examples),
                                                                         replace=False).tolist())
        for w in ws.values():
            w.requires_grad_(True)
        try:
            for b in torch.utils.data.DataLoader(run.examples([(i, j) for j in keep], augment=False), batch_size):
                g = torch.autograd.grad(run.task_loss(mods, mods["backbone"](b["x"].to(run.device())),
                                                      b["y"].to(run.device()), b["task"].to(run.device()), i),
                                        list(ws.values()))
                for name, gi in zip(ws, g, strict=True):
                    grads[name] += gi.double().cpu()
                k += 1
        finally:
            for name, w in ws.items():
                w.requires_grad_(was[name])
        return {name: g / max(k, 1) for name, g in grads.items()}

    def open_correlated(self, run: Any, i: int) -> None:
        """CUBER's test per layer and old task, on the new task's mean gradient after its protected epoch: the old
        tasks whose span gets a sufficient projection of it, positively correlated with their own gradient, are
        opened; the span of the others stays blocked."""
        g_new = self.mean_gradients(run, i)
        opened: dict[str, list[int]] = {}
        for n, m in self.layers.items():
            g = g_new[n]
            ok = []
            for j in range(len(self.bases)):
                inside = g - project_out(g, self.bases[j][n])
                strong = float(inside.norm()) >= self.epsilon * float(g.norm()) > 0
                if strong and float(inside.flatten() @ self.grads[j][n].flatten()) > 0:
                    ok.append(j)
            self.allowed[n] = ok
            self.blocked[n] = union_basis([self.bases[j][n] for j in range(len(self.bases)) if j not in ok],
                                          _in_dim(m))
            opened[n] = ok
        self.transfers.append(opened)

    def metrics(self, run: Any) -> dict[str, Any]:
        """Kept for every class together: the bases (and CUBER's per-task bases and gradients), as float32."""
        floats = sum(b.numel() for b in self.union.values())
        floats += sum(b.numel() for t in self.bases for b in t.values())
        floats += sum(g.numel() for t in self.grads for g in t.values())
        dims = {n: int(b.shape[1]) for n, b in self.union.items()}
        out = {**super().metrics(run), "shared_bytes": int(4 * floats), "basis_dims": dims}
        if self.backward:
            out["opened"] = [{n: v for n, v in t.items() if v} for t in self.transfers]
        return out


def _descent_part(step: Any, grad: Any) -> Any:
    """The part of ``step`` along the descent direction −``grad`` (zero when the step climbs): a move that lowers
    the loss whose gradient ``grad`` is, to first order, as continuing that task's own training would."""
    g = grad.to(step.dtype).reshape(step.shape)
    norm2 = float((g * g).sum())
    along = -float((step * g).sum()) / norm2 if norm2 > 0 else 0.0
    return -max(along, 0.0) * g


def _in_dim(m: Any) -> int:
    return int(math.prod(m.weight.shape[1:]))


def _options(threshold: float, threshold_step: float, n_examples: int, sgd_lr: float | None,
             momentum: float) -> None:
    if not (math.isfinite(threshold) and 0 < threshold <= 1):
        raise TransferlabError(f"threshold must lie in (0, 1], got {threshold}")
    if not (math.isfinite(threshold_step) and threshold_step >= 0):
        raise TransferlabError(f"threshold_step must be a finite number >= 0, got {threshold_step}")
    if not isinstance(n_examples, int) or n_examples < 1:
        raise TransferlabError(f"n_examples must be a positive integer, got {n_examples!r}")
    if sgd_lr is not None and not (math.isfinite(sgd_lr) and sgd_lr > 0):
        raise TransferlabError(f"sgd_lr must be a positive number (or None: the loop's AdamW), got {sgd_lr}")
    if not (math.isfinite(momentum) and 0 <= momentum < 1):
        raise TransferlabError(f"momentum must lie in [0, 1), got {momentum}")
    if momentum and sgd_lr is None:  # the loop's AdamW has its own moments: the option would be ignored
        raise TransferlabError(f"momentum {momentum} is the SGD step's: set sgd_lr too (without it the projected "
                               "layers train by the loop's AdamW)")


@STRATEGIES.register("gpm", summary="gradient projection memory: each layer keeps a basis of the inputs earlier "
                     "tasks gave it (SVD, energy threshold); new updates are projected out of it",
                     paper="Saha, Garg & Roy, Gradient Projection Memory for Continual Learning, ICLR 2021",
                     reference="sahagobinda/GPM (threshold 0.97 + 0.003 per task, 125 examples per task)")
def gpm(threshold: float = 0.97, threshold_step: float = 0.003, n_examples: int = 125, sgd_lr: float | None = None,
        momentum: float = 0.0) -> Strategy:
    """``threshold``: the share of a task's input energy its layers' bases hold (task t: threshold + t ×
    ``threshold_step``, at most 1); ``n_examples``: the training examples per task whose inputs make the bases;
    ``sgd_lr``: the projected layers step by SGD at this rate (with ``momentum``), as the paper, instead of the
    loop's AdamW (which gives the small gradients left outside the bases full-size steps)."""
    _options(threshold, threshold_step, n_examples, sgd_lr, momentum)
    return GradientProjection(threshold, threshold_step, n_examples, backward=False, sgd_lr=sgd_lr, momentum=momentum)


@STRATEGIES.register("cuber", summary="gradient projection that opens an old task's subspace to a new task whose "
                     "gradient there is large and positively correlated with the old task's (backward transfer)",
                     paper="Lin, Yang, Fan & Zhang, Beyond Not-Forgetting: Continual Learning with Backward "
                           "Knowledge Transfer, NeurIPS 2022")
def cuber(threshold: float = 0.97, threshold_step: float = 0.003, n_examples: int = 125,
          epsilon: float = 0.5, sgd_lr: float | None = None, momentum: float = 0.0) -> Strategy:
    """GPM's bases, per task; ``epsilon``: the share of the new task's gradient norm that must lie in an old task's
    subspace (sufficient projection) for that subspace to open, if the two tasks' gradients there agree in sign."""
    _options(threshold, threshold_step, n_examples, sgd_lr, momentum)
    if not (math.isfinite(epsilon) and 0 <= epsilon <= 1):
        raise TransferlabError(f"epsilon must lie in [0, 1], got {epsilon}")
    return GradientProjection(threshold, threshold_step, n_examples, backward=True, epsilon=epsilon, sgd_lr=sgd_lr,
                              momentum=momentum)
