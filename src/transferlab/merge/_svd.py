"""Data-free merges in the singular-value domain of each weight matrix's task vectors.

- ``tsv`` (Task Singular Vectors, Gargiulo et al., CVPR 2025): every task's delta ``ΔW_t = U_t Σ_t V_tᵀ`` keeps its
  top ``⌊r/T⌋`` singular components (``r = min(m, n)``, ``T`` tasks); the kept ``U``'s of all tasks are concatenated
  and replaced by the orthogonal polar factor of the concatenation (``P Qᵀ`` from its SVD ``P S Qᵀ``), and so are the
  ``V``'s; the merged delta is ``U_⊥ · blockdiag(Σ_1..Σ_T) · V_⊥ᵀ`` — the tasks' singular directions decorrelated,
  their singular values kept.
- ``iso`` (isotropic merging, Iso-C, Marczak et al., ICML 2025): the task-arithmetic sum of the deltas with its
  singular values replaced by their mean — a flat spectrum, so no task's dominant directions drown the others. On the
  sum's numerical range only: a rank-deficient sum (LoRA products) keeps its zero singular values.

Both scale the merged delta by ``lam``. Tensors of two or more dimensions are matrices ``[out, rest]`` (a conv kernel
``[out, in, kh, kw]`` is ``[out, in·kh·kw]``; the papers merge the 2-D weights of transformers); 1-D tensors (biases,
norms) are merged by task arithmetic. A task whose delta is zero in a tensor contributes nothing to it. Where
``⌊r/T⌋`` is 0 (a matrix thinner than the number of tasks) TSV keeps one component per task.
"""

from __future__ import annotations

from typing import Any

from ._arith import Method, _lam, compute_dtype
from ._registry import MERGE_METHODS


def polar(a: Any) -> Any:
    """The orthogonal polar factor of ``a`` [m, k]: ``P Qᵀ`` from its reduced SVD ``P S Qᵀ``."""
    import torch

    p, _, qh = torch.linalg.svd(a, full_matrices=False)
    return p @ qh


def _rank(s: Any, shape: Any) -> int:
    """The numerical rank from the singular values ``s`` (descending) of a matrix of ``shape``: those above
    ``max(shape) * eps * s[0]`` (numpy's ``matrix_rank`` tolerance)."""
    import torch

    return int((s > s[0] * max(shape) * torch.finfo(s.dtype).eps).sum()) if len(s) and s[0] > 0 else 0


class _Spectral(Method):
    def __init__(self, lam: float, kind: str) -> None:
        self.lam, self.kind = lam, kind

    def options(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        if not base.is_floating_point():
            return base
        cd = compute_dtype(base)
        ds = [d.to(cd) for d in deltas if d is not None]
        if not ds:
            return base
        if base.ndim < 2 or min(base.shape[0], base[0].numel()) < 1:
            merged = torch.stack(ds).sum(0)
        else:
            mats = [d.reshape(d.shape[0], -1) for d in ds]
            merged = (self._tsv(mats, len(deltas)) if self.kind == "tsv" else self._iso(mats)).reshape(base.shape)
        return (base.to(cd) + self.lam * merged).to(base.dtype)

    @staticmethod
    def _tsv(mats: list[Any], n_tasks: int) -> Any:
        import torch

        r = min(mats[0].shape)
        k = max(1, r // n_tasks)
        us, ss, vs = [], [], []
        for m in mats:
            u, s, vh = torch.linalg.svd(m, full_matrices=False)
            kt = min(k, _rank(s, m.shape))  # a LoRA product's zero singular values have arbitrary vectors: left out
            us.append(u[:, :kt])
            ss.append(s[:kt])
            vs.append(vh[:kt].T)
        if not sum(len(x) for x in ss):
            return torch.zeros_like(mats[0])
        u_perp, v_perp = polar(torch.cat(us, 1)), polar(torch.cat(vs, 1))
        return (u_perp * torch.cat(ss)) @ v_perp.T

    @staticmethod
    def _iso(mats: list[Any]) -> Any:
        """The flat spectrum on the sum's numerical range: singular values below ``max(m, n) * eps * s_max`` (the
        rounding noise of the task vectors: numpy's ``matrix_rank`` tolerance) are zero, and stay zero. A sum of
        LoRA products has rank at most T * r; flattening its zero singular values too (the papers' formula on a
        full-rank sum) would add full-size components along directions the SVD picks arbitrarily."""
        import torch

        u, s, vh = torch.linalg.svd(torch.stack(mats).sum(0), full_matrices=False)
        k = _rank(s, mats[0].shape)
        if k == 0:
            return torch.zeros_like(mats[0])
        return s[:k].mean() * (u[:, :k] @ vh[:k])


@MERGE_METHODS.register("tsv", summary="per weight matrix: each task's top 1/T singular components, their singular "
                        "vectors decorrelated (orthogonal polar factors), scaled by lam",
                        paper="Gargiulo et al., Task Singular Vectors: Reducing Task Interference in Model Merging, "
                              "CVPR 2025")
def tsv(lam: float = 1.0) -> _Spectral:
    return _Spectral(_lam(lam), "tsv")


@MERGE_METHODS.register("iso", summary="per weight matrix: the sum of the task vectors with a flat spectrum (its "
                        "singular values replaced by their mean), scaled by lam",
                        paper="Marczak et al., No Task Left Behind: Isotropic Model Merging (Iso-C), ICML 2025")
def iso(lam: float = 1.0) -> _Spectral:
    return _Spectral(_lam(lam), "iso")


class _Compress(Method):
    """``tsv_compress``: no merge — each task's own model kept as low-rank factors of its task vector per weight
    matrix (its top ``share`` of singular components; default 1/T, the components TSV keeps), its 1-D tensors and
    normalisation statistics whole. The network written is the base; ``tasks/<task>.safetensors`` holds each task's
    factors, and ``transferlab.models.load(out, head=task)`` rebuilds that task's model from them."""

    def __init__(self, share: float | None) -> None:
        self.share = share
        self.task_tensors: list[dict[str, Any]] = []

    def options(self) -> dict[str, Any]:
        return {"share": self.share}

    def prepare(self, job: Any) -> None:
        self.task_tensors = [{} for _ in job.tasks]

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        if not base.is_floating_point():
            return base
        cd = compute_dtype(base)
        for t, d in enumerate(deltas):
            if d is None:
                continue
            if base.ndim < 2:
                self.task_tensors[t][f"{key}.full"] = (base.to(cd) + d.to(cd)).to(base.dtype).contiguous()
                continue
            u, s, vh = torch.linalg.svd(d.to(cd).reshape(d.shape[0], -1), full_matrices=False)
            share = self.share if self.share is not None else 1.0 / len(deltas)
            k = max(1, int(len(s) * share))
            self.task_tensors[t][f"{key}.lowrank_a"] = (u[:, :k] * s[:k]).to(base.dtype).contiguous()
            self.task_tensors[t][f"{key}.lowrank_b"] = vh[:k].to(base.dtype).contiguous()
        return base

    def observe_norm_statistic(self, key: str, base: Any, deltas: list[Any]) -> None:
        """Each task keeps its own running statistics (the written network has the tasks' average)."""
        for t, d in enumerate(deltas):
            own = base if d is None else (base.to(compute_dtype(base)) + d.to(compute_dtype(base))).to(base.dtype)
            self.task_tensors[t][f"{key}.full"] = own.contiguous()


@MERGE_METHODS.register("tsv_compress", summary="no merge: each task's model kept as low-rank factors of its task "
                        "vectors (top 1/T singular components per matrix); load(out, head=task) rebuilds it",
                        paper="Gargiulo et al., Task Singular Vectors, CVPR 2025 (TSV-C)")
def tsv_compress(share: float | None = None) -> _Compress:
    if share is not None and not (isinstance(share, (int, float)) and 0 < share <= 1):
        from ..errors import TransferlabError

        raise TransferlabError(f"share must lie in (0, 1] (the singular components kept per task), got {share!r}")
    return _Compress(None if share is None else float(share))

