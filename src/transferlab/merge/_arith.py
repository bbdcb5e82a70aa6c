"""Data-free merges as configured instances of one task-arithmetic implementation (as mergekit does it).

``theta = base + lam * aggregate(tau_1..tau_T)`` where each task vector ``tau_t`` may first be randomly dropped and
rescaled (DARE), then trimmed to its largest-magnitude entries (TIES), and the aggregate is a sum (task arithmetic), a
mean (weight averaging) or, with a sign election, the mean of the entries that agree with the elected sign (TIES'
disjoint mean).

TIES semantics follow the reference (prateeky2806/ties-merging 44e7891, checked to float64 precision in
tests/merge): a task vector keeps ``|tau| >= t`` where ``t`` is its ``(d - int(d * density))``-th smallest magnitude
(ties at the threshold kept), the sign is elected per entry by total mass, and entries whose mass is exactly zero get
the sign that won the most entries over the whole model. ``scope="model"`` (the paper) trims each task vector over the
whole flattened model; ``scope="tensor"`` per tensor (mergekit, peft).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import TransferlabError
from ._registry import MERGE_METHODS


class Method:
    """What the merge engine drives: ``prepare(job)`` once (statistics, thresholds, learning), then
    ``merge_tensor(key, base, deltas)`` per tensor in order (``deltas[t]`` is task t's task vector, ``None`` for
    zero), then ``finish(patch)`` (late corrections of already written entries)."""

    needs_data = False

    def prepare(self, job: Any) -> None:
        pass

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        raise NotImplementedError

    def finish(self, patch: Any) -> None:
        pass

    def options(self) -> dict[str, Any]:
        return {}

    def weighted_sum(self, n: int) -> tuple[float, list[float]] | None:
        """``(c_0, [c_1..c_n])`` when the merge of ``n`` models is the plain weighted sum ``c_0 base + sum_t c_t
        theta_t`` of the tensors (the engine then streams it, reading the base only when ``c_0 != 0``); else None."""
        return None


def compute_dtype(t: Any) -> Any:
    import torch

    return torch.float64 if t.dtype == torch.float64 else torch.float32


def thetas_of(base: Any, deltas: list[Any]) -> list[Any]:
    """The fine-tuned tensors ``theta_t = base + tau_t`` (``None``: zero task vector), in the compute dtype."""
    b = base.to(compute_dtype(base))
    return [b + d.to(b.dtype) if d is not None else b for d in deltas]


#: the thresholds' sample: every SAMPLE_STEP-th row of every tensor (0.8 % of the entries)
SAMPLE_STEP = 128

#: entries per block of the entry-wise merge (T task vectors x 256 K float32: 4 MB for four models)
BLOCK = 1 << 18


class _Bracket:
    """Exact selection of the ``k``-th smallest magnitude (1-based) between ``lo`` and ``hi``: fed the magnitudes in
    pieces (numpy or torch), it counts those below ``lo`` and keeps those inside; :meth:`kth` partitions only these,
    and says None when the value lies outside the bracket (the caller then selects the plain way)."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi, self.below = lo, hi, 0
        self.inside: list[np.ndarray] = []

    @classmethod
    def around(cls, sample: np.ndarray, q: float, spread: float = 0.0) -> _Bracket:
        """Between the sample's order statistics ``6 sqrt(s) + 16`` (plus ``spread * s``: correlated samples) places
        either side of its ``q``-quantile; open on a side that runs off the sample. May reorder ``sample``."""
        s = len(sample)
        i, margin = int(q * s), int(spread * s) + 6 * int(np.sqrt(s)) + 16
        at = [j for j in (i - margin, i + margin) if 0 <= j < s]
        if at:
            sample.partition(at)  # the two order statistics, no full sort
        return cls(float(sample[i - margin]) if i - margin >= 0 else -np.inf,
                   float(sample[i + margin]) if i + margin < s else np.inf)

    def add(self, m: Any) -> None:
        low = m < self.lo
        self.below += int(low.sum())
        kept = m[~low & (m <= self.hi)]
        self.inside.append(kept.numpy() if hasattr(kept, "numpy") else kept)

    def kth(self, k: int) -> float | None:
        cand, r = np.concatenate(self.inside), k - 1 - self.below
        if not 0 <= r < cand.size:
            return None
        cand.partition(r)
        return float(cand[r])


def kth_threshold(magnitudes: np.ndarray, density: float) -> float | None:
    """The reference's trim threshold: the ``(d - int(d * density))``-th smallest magnitude (1-based); ``None`` when
    nothing is trimmed. May reorder ``magnitudes``.

    Exact, and about twice as fast as one partition of the whole buffer on a model (86 M entries: 0.25 s against
    0.49 s): the value is bracketed between two order statistics of a strided sample, one chunked pass counts the
    entries below the bracket and gathers those inside it (a fraction of a percent), and only those are partitioned.
    Should the bracket miss (it is wide: 6 standard errors of the sample quantile), the whole buffer is partitioned."""
    d = magnitudes.size
    k = d - int(d * density)
    if k <= 0 or d == 0:
        return None
    if d >= 1 << 21:
        bracket = _Bracket.around(magnitudes[:: max(1, d // 100_000)].copy(), (k - 1) / d)
        for c in range(0, d, 1 << 22):  # 4 M entries per step: the boolean masks stay small
            bracket.add(magnitudes[c:c + (1 << 22)])
        value = bracket.kth(k)
        if value is not None:
            return value
    magnitudes.partition(k - 1)  # small, or the bracket missed: the plain way
    return float(magnitudes[k - 1])


@dataclass
class Arithmetic(Method):
    lam: float = 1.0
    mean: bool = False
    density: float | None = None
    scope: Literal["model", "tensor"] = "model"
    sign: Literal["mass", "frequency"] | None = None
    drop: float = 0.0
    seed: int = 0
    _thresholds: list[float | None] = field(default_factory=list, repr=False)
    _vote: int = field(default=0, repr=False)
    _tied: list[tuple[str, Any, Any, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.density is not None and not 0 < self.density <= 1:
            raise TransferlabError(f"density must lie in (0, 1], got {self.density}")
        if not 0 <= self.drop < 1:
            raise TransferlabError(f"drop rate p must lie in [0, 1), got {self.drop}")
        if self.scope not in ("model", "tensor"):
            raise TransferlabError(f"scope must be 'model' or 'tensor', got {self.scope!r}")
        if self.sign not in (None, "mass", "frequency"):
            raise TransferlabError(f"sign must be 'mass' or 'frequency', got {self.sign!r}")

    def options(self) -> dict[str, Any]:
        return {"lam": self.lam, "mean": self.mean, "density": self.density, "scope": self.scope, "sign": self.sign,
                "drop": self.drop, "seed": self.seed}

    # -- the pieces -------------------------------------------------------------------------------------------------
    def _dropped(self, key: str, t: int, d: Any) -> Any:
        import torch

        if not self.drop or d is None:
            return d
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + t * 7919 + zlib.crc32(key.encode())) % 2**63)
        keep = torch.rand(d.shape, generator=g) >= self.drop
        return torch.where(keep, d / (1 - self.drop), torch.zeros((), dtype=d.dtype))

    def prepare(self, job: Any) -> None:
        """Global trim thresholds, exact. Plain task vectors (no DARE drop, sources whose task vector is a
        difference of tensors): every threshold is bracketed from a sample of rows, then one pass reads the base and
        each model once, counting the magnitudes below each bracket and keeping those inside (a few percent), from
        which the exact order statistics follow; a bracket that misses falls back to the pass below for that model.
        Otherwise: one task vector's magnitudes at a time in one buffer (peak: one model)."""
        if self.density is None or self.scope != "model":
            return
        import torch

        from ._sources import Source

        dt = np.float64 if any(job.base.info(k)[1] == torch.float64 for k in job.keys) else np.float32
        n = sum(int(np.prod(job.base.info(k)[0])) for k in job.weight_keys)
        k = n - int(n * self.density)
        self._thresholds = [None] * len(job.tasks)
        if k <= 0 or n == 0:
            return
        plain = not self.drop and all(type(t).delta is Source.delta for t in job.tasks)
        missed = list(range(len(job.tasks)))
        if plain:
            brackets = self._brackets(job, k / n, dt)
            tdt = torch.float64 if dt == np.float64 else torch.float32
            for key in job.progress(job.weight_keys, "trim thresholds"):
                b = job.base.get(key)
                b = b.to(compute_dtype(b))
                for t, task in enumerate(job.tasks):
                    m = task.delta(key, b).reshape(-1).abs_()  # torch: the comparisons run on every core
                    brackets[t].add(m if m.dtype == tdt else m.to(tdt))
            self._thresholds = [bracket.kth(k) for bracket in brackets]
            missed = [t for t, th in enumerate(self._thresholds) if th is None]
        if missed:
            self._buffer_thresholds(job, missed, n, dt)

    def _brackets(self, job: Any, q: float, dt: Any) -> list[_Bracket]:
        """A bracket around each task vector's ``q``-quantile of magnitudes, from every ``SAMPLE_STEP``-th row of
        every tensor; wide (the rows of a tensor are correlated samples), so that it rarely misses."""
        samples: list[list[np.ndarray]] = [[] for _ in job.tasks]
        for key in job.weight_keys:
            b = job.base.rows(key, SAMPLE_STEP)
            b = b.to(compute_dtype(b))
            for t, task in enumerate(job.tasks):
                samples[t].append(np.abs((task.rows(key, SAMPLE_STEP).to(b.dtype) - b).reshape(-1).numpy()))
        return [_Bracket.around(np.concatenate(parts).astype(dt, copy=False), q, spread=0.01) for parts in samples]

    def _buffer_thresholds(self, job: Any, tasks: list[int], n: int, dt: Any) -> None:
        buf = np.empty(n, dtype=dt)
        for t in tasks:
            task, pos = job.tasks[t], 0
            for key in job.progress(job.weight_keys, f"trim threshold {t + 1}/{len(job.tasks)}"):
                b = job.base.get(key)
                d = self._dropped(key, t, task.delta(key, b.to(compute_dtype(b))))
                m = b.numel()
                if d is None:
                    buf[pos:pos + m] = 0
                else:
                    np.abs(d.reshape(-1).numpy(), out=buf[pos:pos + m], casting="unsafe")
                pos += m
            self._thresholds[t] = kth_threshold(buf, self.density)
        del buf

    def merge_tensor(self, key: str, base: Any, deltas: list[Any]) -> Any:
        import torch

        cd = compute_dtype(base)
        b = base.to(cd)
        ds = [self._dropped(key, t, d.to(cd) if d is not None else None) for t, d in enumerate(deltas)]
        if all(d is None for d in ds):
            return base
        if self.density is None:
            thr: list[float | None] = [None] * len(ds)
        elif self.scope == "model":
            thr = self._thresholds
        else:
            thr = [None if d is None else kth_threshold(d.abs().reshape(-1).numpy().copy(), self.density)
                   for d in ds]  # a zero task vector stays zero whatever its threshold
        flat = [d.reshape(-1) if d is not None else None for d in ds]
        agg = torch.empty(b.numel(), dtype=cd)
        # Entry-wise work in blocks that stay in the CPU cache (every step reads the T task vectors again): the same
        # arithmetic per entry as on the whole tensor at once, in a fraction of the memory traffic.
        for s in range(0, b.numel(), BLOCK):
            e = min(s + BLOCK, b.numel())
            D = torch.stack([f[s:e] if f is not None else torch.zeros(e - s, dtype=cd) for f in flat])
            for t, th in enumerate(thr):
                if th is not None:
                    D[t].mul_(D[t].abs() >= th)
            if self.sign is None:
                agg[s:e] = D.mean(0) if self.mean else D.sum(0)
            else:
                agg[s:e] = self._disjoint_mean(key, D, offset=s)
        agg = agg.reshape(b.shape)
        return (b.add_(agg, alpha=self.lam) if b is not base else b + self.lam * agg).to(base.dtype)

    def weighted_sum(self, n: int) -> tuple[float, list[float]] | None:
        """``base + lam * sum_t tau_t = (1 - n lam) base + lam sum_t theta_t`` (the mean: ``lam / n`` each, ``1 -
        lam`` for the base, exactly 0 for ``average``); trimmed, dropped or sign-elected task vectors are not."""
        if self.density is not None or self.drop or self.sign is not None:
            return None
        return (1.0 - self.lam if self.mean else 1.0 - self.lam * n), [self.lam / n if self.mean else self.lam] * n

    def _disjoint_mean(self, key: str, D: Any, offset: int = 0) -> Any:
        """Mean of the entries whose sign agrees with the elected one, in place on ``D``. Entries whose elected sign
        is 0 but which hold non-zero values get the model-wide majority sign, known only after the last tensor: their
        positive and negative means are kept, 0 is written for now, and ``finish`` patches them."""
        import torch

        elected = torch.sign(D.sum(0)) if self.sign == "mass" else torch.sign(torch.sign(D).sum(0))
        self._vote += int(elected.sum())
        agree = (D * elected) > 0
        count = agree.sum(0, dtype=torch.uint8 if D.shape[0] < 256 else torch.int32)  # int64 (default): 7x slower
        held = (D.amax(0) > 0) | (D.amin(0) < 0)  # two reductions, no [T, n] temporary
        tied = torch.nonzero(((elected == 0) & held).reshape(-1)).reshape(-1)
        if tied.numel():
            sub = D.reshape(D.shape[0], -1)[:, tied]
            pos, neg = sub.clamp(min=0), sub.clamp(max=0)
            self._tied.append((key, tied + offset, pos.sum(0) / (pos != 0).sum(0).clamp(min=1),
                               neg.sum(0) / (neg != 0).sum(0).clamp(min=1)))
        D.mul_(agree)
        return D.sum(0).div_(count.clamp_(min=1).to(D.dtype))

    def finish(self, patch: Any) -> None:
        for key, idx, pos, neg in self._tied:  # as the reference: the positive entries if the majority is positive
            v = pos if self._vote > 0 else neg
            patch(key, idx, lambda base, v=v: base + self.lam * v)
        self._tied = []


def _lam(lam: float) -> float:
    if not np.isfinite(lam):
        raise TransferlabError(f"lam must be a finite number, got {lam}")
    return float(lam)


@MERGE_METHODS.register("average", summary="weight averaging (model soup): the mean of the fine-tuned weights",
                        paper="Wortsman et al., Model soups, ICML 2022")
def average() -> Arithmetic:
    return Arithmetic(lam=1.0, mean=True)


@MERGE_METHODS.register("task_arithmetic", summary="base + lam * sum of task vectors",
                        paper="Ilharco et al., Editing models with task arithmetic, ICLR 2023")
def task_arithmetic(lam: float = 0.3) -> Arithmetic:
    return Arithmetic(lam=_lam(lam))


@MERGE_METHODS.register("ties", summary="trim to the top density, elect signs, disjoint mean, scale by lam",
                        paper="Yadav et al., TIES-Merging, NeurIPS 2023",
                        reference="prateeky2806/ties-merging 44e7891 (ties_merging, dis-mean)")
def ties(density: float = 0.2, lam: float = 1.0, scope: Literal["model", "tensor"] = "model",
         sign: Literal["mass", "frequency"] = "mass") -> Arithmetic:
    return Arithmetic(lam=_lam(lam), density=float(density), scope=scope, sign=sign)


@MERGE_METHODS.register("dare", summary="drop task-vector entries with probability p, rescale by 1/(1-p), then task "
                        "arithmetic (ties=True: TIES sign election and disjoint mean instead)",
                        paper="Yu et al., Language Models are Super Mario (DARE), ICML 2024")
def dare(p: float = 0.5, lam: float | None = None, seed: int = 0, ties: bool = False, density: float | None = None,
         scope: Literal["model", "tensor"] = "model") -> Arithmetic:
    lam = (1.0 if ties else 0.3) if lam is None else lam
    return Arithmetic(lam=_lam(lam), drop=float(p), seed=int(seed), sign="mass" if ties else None,
                      density=None if density is None else float(density), scope=scope)
