"""Sparse fine-tuning, LT-SFT style (Ansell et al., "Composable Sparse Fine-Tuning for Cross-Lingual Transfer",
ACL 2022; reference: cambridgeltl/composable-sft).

Phase 1 fine-tunes every parameter; the ``density`` fraction of backbone entries that changed most (by magnitude,
over the whole model) becomes the mask; phase 2 restarts from the pretrained weights and trains only those entries
(plus the new head), projecting after every step so nothing else moves. The result is a :class:`SparseDiff`: it can be
applied to, removed from, and added to other models of the same architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TransferlabError
from ._registry import METHODS, FitContext, Outcome, Prepared, TrainJob


class SparseDiff:
    """Per-tensor flat indices and values of a sparse weight difference."""

    def __init__(self, entries: dict[str, tuple[Any, Any]], shapes: dict[str, tuple[int, ...]]) -> None:
        self.entries, self.shapes = entries, shapes

    @classmethod
    def between(cls, base: dict[str, Any], tuned: dict[str, Any], masks: dict[str, Any]) -> SparseDiff:
        entries, shapes = {}, {}
        for name, mask in masks.items():
            idx = mask.flatten().nonzero().squeeze(1)
            delta = (tuned[name] - base[name]).flatten()[idx]
            entries[name] = (idx, delta.detach().clone())
            shapes[name] = tuple(base[name].shape)
        return cls(entries, shapes)

    def nnz(self) -> int:
        return int(sum(len(i) for i, _ in self.entries.values()))

    def size(self) -> int:
        import math

        return int(sum(math.prod(s) for s in self.shapes.values()))

    def _check(self, params: dict[str, Any]) -> None:
        for name, shape in self.shapes.items():
            if name not in params:
                raise TransferlabError(f"sparse diff has tensor {name!r}, which the model lacks")
            if tuple(params[name].shape) != shape:
                raise TransferlabError(f"sparse diff tensor {name!r} has shape {shape}, the model's is "
                                       f"{tuple(params[name].shape)}")

    def apply_(self, model: Any, scale: float = 1.0) -> Any:
        """Add ``scale`` x the difference to ``model``'s weights in place; returns the model."""
        import torch

        params = dict(model.named_parameters())
        self._check(params)
        with torch.no_grad():
            for name, (idx, val) in self.entries.items():
                params[name].view(-1).index_add_(0, idx.to(params[name].device),
                                                 (val * scale).to(params[name].dtype))
        return model

    def remove_(self, model: Any) -> Any:
        """Subtract the difference in place (undoes :meth:`apply_`)."""
        return self.apply_(model, -1.0)

    def __add__(self, other: SparseDiff) -> SparseDiff:
        """Compose two differences (e.g. a language SFT and a task SFT): union of entries, values summed."""
        import torch

        entries, shapes = dict(self.entries), dict(self.shapes)
        for name, (idx, val) in other.entries.items():
            if name in shapes and shapes[name] != other.shapes[name]:
                raise TransferlabError(f"cannot add sparse diffs: {name!r} has shapes {shapes[name]} and "
                                       f"{other.shapes[name]}")
            if name in entries:
                i0, v0 = entries[name]
                both = torch.cat([i0, idx])
                uniq, inv = torch.unique(both, return_inverse=True)
                vals = torch.zeros(len(uniq), dtype=v0.dtype).index_add_(0, inv, torch.cat([v0, val.to(v0.dtype)]))
                entries[name] = (uniq, vals)
            else:
                entries[name] = (idx, val)
                shapes[name] = other.shapes[name]
        return SparseDiff(entries, shapes)

    def save(self, path: str | Path) -> None:
        import json

        import torch
        from safetensors.torch import save_file

        tensors = {}
        for name, (idx, val) in self.entries.items():
            tensors[f"{name}::idx"] = idx.to(torch.int64).contiguous()
            tensors[f"{name}::val"] = val.contiguous()
        save_file(tensors, str(path), metadata={"shapes": json.dumps(self.shapes)})

    @classmethod
    def load(cls, path: str | Path) -> SparseDiff:
        import json

        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(v) for k, v in json.loads(f.metadata()["shapes"]).items()}
            entries = {n: (f.get_tensor(f"{n}::idx"), f.get_tensor(f"{n}::val")) for n in shapes}
        return cls(entries, shapes)


def top_k_masks(base: dict[str, Any], tuned: dict[str, Any], names: list[str], density: float) -> dict[str, Any]:
    """Masks of the ``density`` fraction of entries with the largest |tuned - base|, over all ``names`` at once."""
    import torch

    if not 0 < density <= 1:
        raise TransferlabError(f"sparse: density must lie in (0, 1], got {density}")
    deltas = {n: (tuned[n] - base[n]).abs().flatten() for n in names}
    flat = torch.cat(list(deltas.values()))
    k = max(1, int(round(density * flat.numel())))
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    masks = {n: deltas[n] > threshold for n in names}  # fewer than k entries lie strictly above the k-th value
    budget = k - sum(int(m.sum()) for m in masks.values())
    for n in names:  # ties at the threshold fill the rest, in order, until exactly k entries are kept
        if budget <= 0:
            break
        at = (deltas[n] == threshold).nonzero().squeeze(1)[:budget]
        masks[n][at] = True
        budget -= len(at)
    return {n: masks[n].view_as(base[n]) for n in names}


@METHODS.register("sparse", summary="LT-SFT: fine-tune, keep the most-changed density fraction, retrain only those",
                  default_lr=3e-4, paper="Ansell et al., Composable Sparse Fine-Tuning for Cross-Lingual Transfer, "
                  "ACL 2022")
def sparse(model: Any, ctx: FitContext, density: float = 0.01) -> Prepared:
    """Both phases run in :func:`sparse_fit_` through the one training loop; the mask's difference is saved beside
    the model as ``sparse_diff.safetensors``."""
    if not 0 < float(density) <= 1:
        raise TransferlabError(f"sparse: density must lie in (0, 1], got {density}")

    def run(prep: Prepared, job: TrainJob) -> Outcome:
        net, trainable, history, val_acc, diff = sparse_fit_(prep.model, job.train_data, job.val_data, job.config,
                                                              job.progress, job.checkpoint_dir, float(density))
        prep.params = trainable
        head = sum(p.numel() for p in net.get_classifier().parameters())
        # the entries that may change (the mask) plus the head, not the whole tensors that hold them
        prep.metrics.update(sparse_nnz=diff.nnz(), sparse_of=diff.size(), trainable_params=int(diff.nnz() + head))
        prep.files["sparse_diff.safetensors"] = diff.save
        return Outcome(history, val_acc)

    return Prepared(model, [], run=run)


def sparse_fit_(net: Any, train_data: Any, val_data: Any, cfg: Any, progress: bool, ckdir: Path | None,
                density: float = 0.01) -> tuple[Any, list[Any], list[dict], float | None,
                                                                      SparseDiff]:
    """Run both LT-SFT phases on ``net`` in place; returns (net, trainable, history, val accuracy, diff)."""
    import torch

    from ..train import Supervised, train

    head = net.get_classifier()
    head_ids = {id(p) for p in head.parameters()}
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    buffers0 = {n: b.detach().clone() for n, b in net.named_buffers()}
    body = [n for n, p in net.named_parameters() if id(p) not in head_ids]
    for p in net.parameters():
        p.requires_grad_(True)
    r1 = train({"model": net}, Supervised(options={"method": "sparse", "phase": 1}), train_data, cfg,
               val_data=val_data, progress=progress, checkpoint_dir=ckdir / "phase1" if ckdir is not None else None)
    tuned = {n: p.detach().clone() for n, p in net.named_parameters()}
    masks = top_k_masks(theta0, tuned, body, density)
    params = dict(net.named_parameters())
    with torch.no_grad():  # back to the pretrained weights (and statistics), the head to its initialisation
        for n, p in params.items():
            p.copy_(theta0[n])
        for n, b in net.named_buffers():
            b.copy_(buffers0[n])
    masks = {n: m for n, m in masks.items() if bool(m.any())}
    for n, p in params.items():
        p.requires_grad_(n in masks or id(p) in head_ids)
    trainable = [p for p in net.parameters() if p.requires_grad]
    fmask = {n: m.to(params[n].dtype) for n, m in masks.items()}

    def project() -> None:
        with torch.no_grad():
            for n, m in fmask.items():
                p = params[n]
                p.copy_(theta0[n] + m * (p - theta0[n]))

    phase2 = Supervised(params=trainable, after_step=project, freeze_norm_stats=True,
                        options={"method": "sparse", "phase": 2, "density": density})
    r2 = train({"model": net}, phase2, train_data, cfg, val_data=val_data, progress=progress,
               checkpoint_dir=ckdir / "phase2" if ckdir is not None else None)
    diff = SparseDiff.between(theta0, dict(net.named_parameters()), masks)
    history = [{**h, "phase": 1} for h in r1.history] + [
        {**h, "phase": 2, "epoch": h["epoch"] + len(r1.history)} for h in r2.history]
    return net, trainable, history, r2.best_val_accuracy, diff
