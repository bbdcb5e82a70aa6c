"""aTLAS (Zhang et al., Knowledge Composition using Task Vectors with Learned Anisotropic Scaling, NeurIPS 2024):
``theta = base + sum_t sum_b lam[t, b] * tau[t, b]`` with one learned coefficient per task vector per parameter
tensor, trained through ``torch.func.functional_call`` by the shared training loop on a few examples of each task:
labelled (cross-entropy under each task's own head) or unlabelled (``objective="entropy"``: the entropy of each task
head's prediction, as AdaMerging does). Heads and the network's own weights stay frozen; only ``lam`` trains.
Buffers (batch-norm statistics) are averaged. Holds the base and every task vector in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import TransferlabError
from ._arith import Method, compute_dtype, thetas_of
from ._registry import MERGE_METHODS


def _module(net: Any, keys: list[str], base: dict[str, Any], deltas: list[dict[str, Any]],
            heads: list[tuple[Any, Any]], init: float) -> Any:
    import torch
    from torch.func import functional_call

    class AtlasNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            for p in net.parameters():
                p.requires_grad_(False)
            self.keys = keys
            self.coef = torch.nn.Parameter(torch.full((len(deltas), len(keys)), float(init)))
            for j, k in enumerate(keys):
                self.register_buffer(f"base_{j}", base[k], persistent=False)
                for t, d in enumerate(deltas):
                    self.register_buffer(f"tau_{t}_{j}", d[k], persistent=False)
            for t, (w, b) in enumerate(heads):
                self.register_buffer(f"head_w_{t}", w, persistent=False)
                self.register_buffer(f"head_b_{t}", b, persistent=False)
            self.n_tasks = len(deltas)

        def merged(self) -> dict[str, Any]:
            out = {}
            for j, k in enumerate(self.keys):
                v = getattr(self, f"base_{j}")
                for t in range(self.n_tasks):
                    v = v + self.coef[t, j].to(v.dtype) * getattr(self, f"tau_{t}_{j}")
                out[k] = v
            return out

        def forward(self, x: Any) -> Any:
            feats = functional_call(self.net, self.merged(), (x,), strict=False)
            return torch.cat([torch.nn.functional.linear(feats, getattr(self, f"head_w_{t}"),
                                                         getattr(self, f"head_b_{t}"))
                              for t in range(self.n_tasks)], dim=1)

    return AtlasNet()


def block_objective(offsets: list[int], objective: str) -> Any:
    """``loss(logits, y)`` over concatenated task heads: each example is scored by its own task's block of logits
    (``y`` carries the task through its offset): cross-entropy, or the entropy of the block's softmax."""
    import torch

    bounds = torch.tensor(offsets[1:-1])

    def loss(logits: Any, y: Any) -> Any:
        task = torch.bucketize(y.cpu(), bounds, right=True).to(y.device)
        total = logits.new_zeros(())
        for t in range(len(offsets) - 1):
            m = task == t
            if not bool(m.any()):
                continue
            block = logits[m, offsets[t]:offsets[t + 1]]
            if objective == "entropy":
                logp = torch.log_softmax(block, dim=1)
                total = total - (logp.exp() * logp).sum()
            else:
                total = total + torch.nn.functional.cross_entropy(block, y[m] - offsets[t], reduction="sum")
        return total / len(y)

    return loss


class _Offset:
    def __init__(self, data: Any, offset: int) -> None:
        self.data, self.offset = data, offset

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Any:
        x, y = self.data[i]
        return x, y + self.offset


@dataclass
class Atlas(Method):
    examples: int = 128
    objective: Literal["labels", "entropy"] = "labels"
    epochs: int = 10
    lr: float = 1e-2
    batch_size: int = 32
    init: float = 0.3
    seed: int = 0
    progress: bool = False
    needs_data = True
    coefficients_: Any = field(default=None, repr=False)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.objective not in ("labels", "entropy"):
            raise TransferlabError(f"atlas: objective must be 'labels' or 'entropy', got {self.objective!r}")
        if self.examples < 1 or self.epochs < 1:
            raise TransferlabError("atlas: examples and epochs must be >= 1")

    def options(self) -> dict[str, Any]:
        return {"examples": self.examples, "objective": self.objective, "epochs": self.epochs, "lr": self.lr,
                "batch_size": self.batch_size, "init": self.init, "seed": self.seed}

    def prepare(self, job: Any) -> None:
        import torch

        from ..train import Supervised, TrainConfig, train

        datas, heads, offsets = [], [], [0]
        net = None
        for i, t in enumerate(job.tasks):
            m = job.task_model(i)
            datas.append(_Offset(job.task_data(i, m, self.examples, self.seed), offsets[-1]))
            w, b = _linear_head(t)
            heads.append((w.float(), b.float()))
            offsets.append(offsets[-1] + w.shape[0])
            if i == 0:
                net = m
            else:
                del m
        assert net is not None
        params = {n for n, _ in net.named_parameters()}
        keys = [k for k in job.float_keys if k in params]
        base = {k: job.base.get(k).float() for k in job.float_keys}
        deltas = [{k: (d if (d := t.delta(k, base[k])) is not None else torch.zeros_like(base[k])) for k in keys}
                  for t in job.tasks]
        net.reset_classifier(0)
        buffers = {k: torch.stack([base[k] + (d if (d := t.delta(k, base[k])) is not None else 0)
                                   for t in job.tasks]).mean(0) for k in job.float_keys if k not in params}
        net.load_state_dict(buffers, strict=False)
        model = _module(net, keys, base, deltas, heads, self.init)
        data = torch.utils.data.ConcatDataset(datas)
        cfg = TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed,
                          weight_decay=0.0, clip_grad_norm=None, warmup=0.0)
        objective = Supervised(params=[model.coef], loss=block_objective(offsets, self.objective),
                               freeze_norm_stats=True, options={"atlas": self.objective})
        self.history_ = train({"model": model}, objective, data, cfg, progress=self.progress or job.show).history
        self.coefficients_ = model.coef.detach().cpu().double()
        self._index = {k: j for j, k in enumerate(keys)}

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        if key not in self._index:
            return torch.stack(thetas_of(base, deltas)).mean(0)
        cd = compute_dtype(base)
        j = self._index[key]
        out = base.to(cd).clone()
        for t, d in enumerate(deltas):
            if d is not None:
                out += self.coefficients_[t, j].to(cd) * d.to(cd)
        return out


def _linear_head(src: Any) -> tuple[Any, Any]:
    import torch

    hk = src.head_keys()
    w = [k for k in hk if k.endswith("weight")]
    b = [k for k in hk if k.endswith("bias")]
    if len(w) != 1 or src.info(w[0])[0].__len__() != 2:
        raise TransferlabError(f"atlas: {src.label}'s head ({', '.join(hk) or 'none'}) is not one linear layer")
    weight = src.get(w[0])
    bias = src.get(b[0]) if b else torch.zeros(weight.shape[0], dtype=weight.dtype)
    return weight, bias


@MERGE_METHODS.register("atlas", summary="learned per-tensor coefficients of each task vector (few labelled examples, "
                        "or unlabelled with an entropy objective)", needs_data=True,
                        paper="Zhang et al., Knowledge Composition using Task Vectors with Learned Anisotropic Scaling "
                        "(aTLAS), NeurIPS 2024")
def atlas(examples: int = 128, objective: Literal["labels", "entropy"] = "labels", epochs: int = 10,
          lr: float = 1e-2, batch_size: int = 32, init: float = 0.3, seed: int = 0) -> Atlas:
    return Atlas(int(examples), objective, int(epochs), float(lr), int(batch_size), float(init), int(seed))
