"""Mergeability: whether the models to merge can be merged at all, measured from their task vectors (issue 33 item 3;
mergekit's most reported silent failure is a merge of models that were not fine-tuned from one base, or whose
tokenizers differ: arcee-ai/mergekit#47, #139, #425, #469).

Measured per model (exactly; estimated from the sampled rows below in a plain weighted sum, ``average``, ``linear``,
``task_arithmetic``, which never forms the task vectors and reads of the base only those rows): the task vector's norm relative to the base's weights (fine-tuning moves them by a few percent;
a model trained from another starting point differs by about as much as the weights themselves), its norm against
the largest model's (a task vector many times larger dominates every sum), and the share of tensors left exactly
as the base's. Per pair: the cosine of the task vectors. Per weight tensor: the sign-conflict ratio (of the entries
where some task vector is non-zero, those where one is positive and another negative), the pairwise cosine and the
norm ratio. Cross products and sign conflicts are measured on about :data:`SAMPLE` entries per tensor, in evenly spaced
rows (every entry of a smaller one), scaled to the tensor: estimates, so that the check costs the merge little. Across inputs: the
tokenizer files (vocabulary, merges, sentencepiece model) and the models' recorded base. ``merge --check`` also hashes
the base's weights (the hash names the base a merge assumes: equal hashes, the same weights).

The statistics are collected during the merge's one pass over the tensors (``_Job.observer``), so every merge prints
the short form; :func:`check_models` runs the pass alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("transferlab.merge._api")

#: entries per tensor the sign-conflict ratio is measured on (in evenly spaced rows)
SAMPLE = 1 << 14
#: a task vector this large relative to the base's weights was not fine-tuned from that base
FOREIGN = 0.5
#: a task vector this many times smaller than the largest one is drowned by it in a sum
NORM_RATIO = 10.0
#: tokenizer files compared across inputs (a fit directory's are in its ``tokenizer`` folder)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "added_tokens.json")


class Observer:
    """Fed ``(key, base, deltas)`` for every weight tensor of the merge pass; :meth:`result` gives the check."""

    def __init__(self, labels: Sequence[str], hash_base: bool = False) -> None:
        import torch

        self.labels, self.n = list(labels), len(labels)
        self.gram = torch.zeros(self.n, self.n, dtype=torch.float64)  # sum over tensors of <tau_s, tau_t>
        self.base_sq = 0.0
        self.untouched = [0] * self.n
        self.tensors = 0
        self.layers: list[dict[str, Any]] = []
        self.conflicts = [0, 0]  # entries with a sign conflict, entries some task vector holds
        self.digest = hashlib.blake2b(digest_size=8) if hash_base else None
        self.sampled = False  # some norms estimated from samples (:meth:`sample`)

    def __call__(self, key: str, base: Any, deltas: list[Any]) -> None:
        """Exact norms (one pass per task vector and one over the base); the cross products and sign conflicts on
        :func:`sample_rows` (at most about :data:`SAMPLE` entries), scaled to the tensor: the pass stays about as
        fast."""
        import torch

        if self.digest is not None:
            self.digest.update(key.encode())
            self.digest.update(base.contiguous().view(torch.uint8).reshape(-1).numpy() if base.numel() else b"")
        zero = torch.zeros(sample_rows(base).numel(), dtype=torch.float64)
        s = torch.stack([zero if d is None else sample_rows(d).to(torch.float64) for d in deltas])
        self._add(key, base.numel(), _sq(base), [0.0 if d is None else _sq(d) for d in deltas], s)

    def sample(self, key: str, base: Any, thetas: list[Any]) -> None:
        """The weighted-sum path's form: every statistic, the norms too, from :func:`sample_rows` of the base and of
        each model's tensor (``thetas``), scaled to the whole tensor (estimates; exact for tensors of at most
        :data:`SAMPLE` entries): of a mapped file, only those rows are read."""
        import torch

        b = sample_rows(base).to(torch.float64)
        s = torch.stack([sample_rows(t).to(torch.float64) - b for t in thetas])
        scale = base.numel() / max(1, b.numel())
        self.sampled = self.sampled or scale > 1
        self._add(key, base.numel(), float(torch.dot(b, b)) * scale, [float(torch.dot(d, d)) * scale for d in s], s)

    def _add(self, key: str, n: int, base_sq: float, sq: list[float], s: Any) -> None:
        """One tensor's statistics: the squared norms of the base and of the task vectors (``sq``), and the sampled
        task vectors ``s`` (``T x m``) for the cross products and sign conflicts, scaled by ``n / m``."""
        import torch

        self.tensors += 1
        self.base_sq += base_sq
        scale = n / max(1, s.shape[1])
        g = (s @ s.T) * scale
        g.diagonal().copy_(torch.tensor(sq, dtype=torch.float64))
        self.gram += g
        for t, v in enumerate(sq):
            self.untouched[t] += int(v == 0)
        pos, neg = (s > 0).any(0), (s < 0).any(0)
        held, both = int((pos | neg).sum()), int((pos & neg).sum())
        self.conflicts[0] += both * scale
        self.conflicts[1] += held * scale
        self.layers.append({"tensor": key, "entries": n, "sign_conflict": both / held if held else None,
                            "cosine": _mean_cosine(g), "norm_ratio": _ratio(torch.sqrt(torch.diagonal(g)))})

    def result(self, sources: Sequence[Any] = (), base_ref: str | None = None) -> MergeCheck:
        import math

        norms = [math.sqrt(max(float(self.gram[t, t]), 0.0)) for t in range(self.n)]
        top = max(norms) if norms else 0.0
        base_norm = math.sqrt(self.base_sq)
        models = [{"model": label, "relative_norm": norms[t] / base_norm if base_norm else None,
                   "norm_vs_largest": norms[t] / top if top else None,
                   "untouched_tensors": self.untouched[t] / self.tensors if self.tensors else None}
                  for t, label in enumerate(self.labels)]
        pairs = [{"a": self.labels[s], "b": self.labels[t],
                  "cosine": float(self.gram[s, t]) / (norms[s] * norms[t]) if norms[s] and norms[t] else None}
                 for s in range(self.n) for t in range(s + 1, self.n)]
        check = MergeCheck(models, pairs, self.layers,
                           self.conflicts[0] / self.conflicts[1] if self.conflicts[1] else None,
                           self.digest.hexdigest() if self.digest is not None else None,
                           norms="sampled" if self.sampled else "exact")
        check.warnings = _warnings(check, sources, base_ref)
        return check


def sample_rows(t: Any) -> Any:
    """The check's sample of a tensor, flat: every ``step``-th row (first dimension; entry of a 1-d tensor),
    ``step = numel // SAMPLE`` (every row of a tensor of at most :data:`SAMPLE` entries). Rows, so that a mapped
    file is read only there."""
    step = max(1, t.numel() // SAMPLE)
    return (t[::step] if t.dim() >= 2 else t.reshape(-1)[::step]).reshape(-1)


def _sq(t: Any) -> float:
    """The squared norm of ``t`` (one BLAS dot product; float32 unless ``t`` is float64)."""
    import torch

    v = t.reshape(-1)
    v = v if v.dtype in (torch.float32, torch.float64) else v.float()
    return float(torch.dot(v, v))


def _mean_cosine(g: Any) -> float | None:
    import math

    n = g.shape[0]
    vals = [float(g[s, t]) / math.sqrt(float(g[s, s]) * float(g[t, t])) for s in range(n) for t in range(s + 1, n)
            if float(g[s, s]) > 0 and float(g[t, t]) > 0]
    return sum(vals) / len(vals) if vals else None


def _ratio(norms: Any) -> float | None:
    nz = norms[norms > 0]
    return float(nz.max() / nz.min()) if len(nz) > 1 else None


@dataclass
class MergeCheck:
    models: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    layers: list[dict[str, Any]]
    sign_conflict: float | None
    base_hash: str | None = None
    warnings: list[str] = field(default_factory=list)
    norms: str = "exact"  # "sampled": estimated from the sampled rows (the streamed weighted sums)

    def to_dict(self) -> dict[str, Any]:
        return {"base_hash": self.base_hash, "sign_conflict": self.sign_conflict, "norms": self.norms,
                "models": self.models, "pairs": self.pairs, "layers": self.layers, "warnings": self.warnings}

    def short(self) -> str:
        """One line: the task vectors' size against the base, their norm ratio, cosines, sign conflicts."""
        rel = [m["relative_norm"] for m in self.models if m["relative_norm"] is not None]
        cos = [p["cosine"] for p in self.pairs if p["cosine"] is not None]
        ratio = [m["norm_vs_largest"] for m in self.models if m["norm_vs_largest"]]
        worst = max((x for x in self.layers if x["sign_conflict"] is not None), key=lambda x: x["sign_conflict"],
                    default=None)
        parts = [f"task vectors {100 * min(rel):.1f}-{100 * max(rel):.1f} % of the base's norm" if rel else
                 "no task vector",
                 f"norm ratio {1 / min(ratio):.1f}x" if ratio else "",
                 f"pairwise cosine {min(cos):.2f} to {max(cos):.2f}" if cos else "",
                 f"sign conflicts in {100 * self.sign_conflict:.0f} % of entries" if self.sign_conflict is not None
                 else "",
                 f"(most: {worst['tensor']} {100 * worst['sign_conflict']:.0f} %)" if worst else ""]
        return "mergeability: " + "; ".join(p for p in parts[:4] if p) + (f" {parts[4]}" if parts[4] else "")


def _warnings(check: MergeCheck, sources: Sequence[Any], base_ref: str | None) -> list[str]:
    out = []
    for m in check.models:
        rel, vs = m["relative_norm"], m["norm_vs_largest"]
        if rel is not None and rel > FOREIGN:
            out.append(f"{m['model']} differs from the base by {100 * rel:.0f} % of the base's weights (fine-tuning "
                       "moves them by a few percent): it was probably not fine-tuned from this base, and merging it "
                       "averages unrelated weights; give the base it was fine-tuned from (--base)")
        elif rel == 0:
            out.append(f"{m['model']} is the base itself (its task vector is zero): it adds nothing to the merge")
        elif vs is not None and vs < 1 / NORM_RATIO:
            out.append(f"{m['model']}'s task vector is {1 / vs:.0f}x smaller than the largest: sums of task vectors "
                       "(task_arithmetic, ties) are dominated by the largest; weight the models (linear) or use iso")
    out += _recorded_bases(sources, base_ref) + _tokenizers(sources)
    return out


def _recorded_bases(sources: Sequence[Any], base_ref: str | None) -> list[str]:
    """Fits whose card records a model reference other than the merge's base (a local base file cannot be matched)."""
    if not base_ref or Path(base_ref).exists():
        return []
    return [f"{s.label} was fine-tuned from {rec}, but the base is {base_ref}: task vectors over another base are "
            "not what the fit learned; give the base it was fine-tuned from (--base)" for s in sources[1:]
            if (rec := (s.config or {}).get("model")) and isinstance(rec, str) and rec != base_ref
            and not Path(rec).exists()]


def tokenizer_hashes(src: Any) -> dict[str, str]:
    """File name -> a hash of its vocabulary, for the tokenizer files of an input folder (``tokenizer.json``: its
    model and added tokens only, not its padding or truncation settings)."""
    if src.path is None or not Path(src.path).is_dir():
        return {}
    out = {}
    for folder in (Path(src.path), Path(src.path) / "tokenizer"):
        for name in TOKENIZER_FILES:
            f = folder / name
            if name in out or not f.is_file():
                continue
            raw = f.read_bytes()
            if name == "tokenizer.json":
                try:
                    tok = json.loads(raw)
                    raw = json.dumps([tok.get("model"), tok.get("added_tokens")], sort_keys=True).encode()
                except ValueError:
                    pass
            out[name] = hashlib.blake2b(raw, digest_size=8).hexdigest()
    return out


def _tokenizers(sources: Sequence[Any]) -> list[str]:
    """A warning per input whose tokenizer files differ from the first input's that has them."""
    found = [(s, h) for s in sources if (h := tokenizer_hashes(s))]
    if len(found) < 2:
        return []
    (ref, ref_h), out = found[0], []
    for s, h in found[1:]:
        differ = sorted(n for n in set(h) & set(ref_h) if h[n] != ref_h[n])
        if differ:
            out.append(f"{s.label} and {ref.label} have different tokenizers ({', '.join(differ)} differ): the same "
                       "token id means another token in each, so their embedding rows do not line up and the merged "
                       "model mixes unrelated tokens; merge models that share the base's tokenizer "
                       "(mergekit#47, #139, #425, #469)")
    return out


def check_models(base: Any, models: Sequence[Any], *, head_prefix: str | None = None, trust_pickle: bool = False,
                 progress: bool = False) -> MergeCheck:
    """The mergeability check alone (``transferlab merge --check``): one pass over the tensors, nothing written; the
    base's weights hashed as well."""
    from ._arith import compute_dtype
    from ._job import _Job

    job = _Job("average", base, models, data=None, head_prefix=head_prefix, trust_pickle=trust_pickle,
               progress=progress, options={})
    try:
        obs = Observer([t.path.name if t.path else f"task{i + 1}" for i, t in enumerate(job.tasks)],
                       hash_base=True)  # named as merge_models names the tasks by default
        for key in job.progress(job.weight_keys, "mergeability"):
            b = job.base.get(key)
            obs(key, b, [t.delta(key, b.to(compute_dtype(b))) for t in job.tasks])
        check = obs.result([job.base, *job.tasks], job.base_ref)
    finally:
        job.close()
    for w in check.warnings:
        log.warning("%s", w)
    return check
