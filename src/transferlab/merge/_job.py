"""A merge job: the base and fine-tuned sources opened and checked against each other (architectures, heads,
adapter bases, tensors, dtypes, tied tensors), streamed tensor by tensor to the merge method."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .._progress import progress as progress_bars
from ..errors import TransferlabError
from ._arith import compute_dtype, thetas_of
from ._registry import MERGE_METHODS
from ._sources import DictSource, Source, open_source
from ._stream import SUPPORTED_DTYPES
from ._weighted import Scratch, streamable, weighted_sum

log = logging.getLogger("transferlab.merge._api")


class _Job:
    """The sources, the tensors to merge, the method, and (for data-dependent methods) one dataset per task."""

    def __init__(self, method: str, base: Any, finetuned: Sequence[Any], *, data: Sequence[Any] | None,
                 head_prefix: str | None, trust_pickle: bool, progress: bool, options: dict[str, Any]) -> None:
        entry = MERGE_METHODS.entry(method)  # unknown: lists the known ones
        if base is None:
            raise TransferlabError("merge needs the base model the fine-tuned models started from (--base)")
        if isinstance(finetuned, (str, Path, dict)) or len(finetuned) < 2:
            n = 1 if isinstance(finetuned, (str, Path, dict)) else len(finetuned)
            raise TransferlabError(f"nothing to merge: {n} fine-tuned model given; merging needs at least two")
        self.show = progress
        self.trust_pickle = trust_pickle
        self.observer: Any = None  # the mergeability check (``_compat.Observer``): sees every weight tensor
        self.sources: list[Source] = []
        try:
            self._setup(method, entry, base, finetuned, data, head_prefix, options)
        except BaseException:
            self.close()
            raise

    def _setup(self, method: str, entry: Any, base: Any, finetuned: Sequence[Any], data: Sequence[Any] | None,
               head_prefix: str | None, options: dict[str, Any]) -> None:
        self.base = self._open(base, "base", allow_reference=True)
        self.base_ref = str(base) if isinstance(base, (str, Path)) else None
        self.tasks = [self._open(m, f"model {i + 1} ({_label(m)})", base=self.base) for i, m in enumerate(finetuned)]
        self._check_architectures()
        self._set_heads(head_prefix)
        self.keys = [k for k in self.base.keys() if not self.base.is_head(k)]
        self._check_tensors()
        self._check_adapter_bases()
        self.float_keys = [k for k in self.keys  # buffers some model lacks are the base's, like integer ones
                           if self.base.info(k)[1].is_floating_point and k not in self.from_base]
        self.aliases = self._aliases()  # tied tensors: second name -> first name
        self.aliased = set(self.aliases.values())
        self.weight_keys = [k for k in self.float_keys  # what the methods merge (a tied tensor once)
                            if not is_norm_statistic(k) and k not in self.aliases]
        self.data = list(data) if data is not None else None
        self.method_name = method
        try:
            self.method = entry.obj(**options)
        except TypeError as exc:
            raise TransferlabError(f"{method}: {exc}") from None
        if self.method.needs_data:
            if not self.data:
                raise TransferlabError(f"{method} needs data: one dataset per fine-tuned model (--data)")
            if len(self.data) != len(self.tasks):
                raise TransferlabError(f"{method}: {len(self.data)} datasets for {len(self.tasks)} models; give one "
                                       "per model, in the same order")

    def _open(self, obj: Any, label: str, **kw: Any) -> Source:
        src = open_source(obj, label, trust_pickle=self.trust_pickle, **kw)
        self.sources.append(src)
        return src

    def _set_heads(self, explicit: str | None) -> None:
        found = {s.head_prefix for s in self.tasks if s.head_prefix}
        if explicit:
            prefix = explicit
        elif len(found) > 1:
            raise TransferlabError(f"the models disagree on their classification head ({', '.join(sorted(found))}): "
                                   "they are not the same architecture")
        else:
            prefix = next(iter(found), None) or self.base.head_prefix
        for s in [self.base, *self.tasks]:
            s.head_prefix = prefix
        self.head_prefix = prefix

    def _check_architectures(self) -> None:
        from ..models import architecture_key

        archs = [(s, s.config.get("architecture")) for s in [self.base, *self.tasks] if s.config]
        archs = [(s, a) for s, a in archs if a]
        for s, a in archs[1:]:
            if architecture_key(a) != architecture_key(archs[0][1]):
                raise TransferlabError(f"{s.label} is a {a.get('name')} but {archs[0][0].label} is a "
                                       f"{archs[0][1].get('name')}: merging needs one architecture")

    def _check_adapter_bases(self) -> None:
        """An adapter's task vector is relative to the model it was trained on: that must be the base. Checked when
        the base is a model reference (a local base file or directory cannot be matched to a reference: warned)."""
        for t in self.tasks:
            if t.path is None or not (t.path / "adapter_config.json").is_file():
                continue
            trained_on = (t.config or {}).get("model")
            if not trained_on or not self.base_ref or trained_on == self.base_ref:
                continue
            if Path(self.base_ref).exists():
                log.warning("%s is an adapter trained on %s; the base %s is a local file, so merge cannot check it is "
                            "the same model", t.label, trained_on, self.base_ref)
                continue
            raise TransferlabError(f"{t.label} is an adapter trained on {trained_on}, but the base is "
                                   f"{self.base_ref}: merge adapters over the model they were trained on")

    def _aliases(self) -> dict[str, str]:
        """Names of the base state dict that share one tensor (tied embeddings), still tied in every fine-tuned
        model: merged once, under the first name. Files cannot hold shared tensors; only in-memory state dicts can.
        A pair the fine-tuning untied is merged as two tensors."""
        if not isinstance(self.base, DictSource):
            return {}
        first: dict[tuple[Any, ...], str] = {}
        out: dict[str, str] = {}
        for k in self.keys:
            t = self.base.state[k]
            if t.numel() == 0 or k in self.from_base:
                continue
            ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
            if ident not in first:
                first[ident] = k
                continue
            k1 = first[ident]
            if t.is_floating_point():
                b = t.to(compute_dtype(t))
                same = all(_same(task.delta(k1, b), task.delta(k, b)) for task in self.tasks)
            else:
                same = True
            if same:
                out[k] = k1
        return out

    def _check_tensors(self) -> None:
        want = {k: self.base.info(k) for k in self.keys}
        hint = "" if self.head_prefix else " (if that tensor is a task head, name it with --head-prefix)"
        self.from_base: set[str] = set()  # buffers a fine-tuned model lacks: written with the base's values
        for t in self.tasks:
            have = [k for k in t.keys() if not t.is_head(k)]
            held = set(have)
            missing = [k for k in self.keys if k not in held]
            extra = [k for k in have if k not in want]
            lacks, spare = self._buffers(missing, self.base), self._buffers(extra, t)
            if lacks:  # transformers >= 4.31 saves no position_ids; their values are fixed, not trained
                log.warning("%s lacks the buffers %s; the base's values are used", t.label, ", ".join(lacks))
                self.from_base.update(lacks)
            if spare:
                log.warning("%s has buffers the base lacks, left out: %s", t.label, ", ".join(spare))
            missing, extra = [k for k in missing if k not in lacks], [k for k in extra if k not in spare]
            if missing or extra:
                k = (missing or extra)[0]
                raise TransferlabError(
                    f"{t.label} and the base differ in architecture: tensor {k} is only in "
                    f"{'the base' if missing else t.label}{hint}")
            for k in self.keys:
                (bs, bdt) = want[k]
                if str(bdt).replace("torch.", "") not in SUPPORTED_DTYPES:
                    raise TransferlabError(f"tensor {k} is {bdt}, a dtype merging does not handle; convert the "
                                           "checkpoints first")
                if k not in held:
                    continue
                ts, tdt = t.info(k)
                if ts != bs:
                    raise TransferlabError(f"{t.label} and the base differ in architecture: tensor {k} has shape "
                                           f"{list(ts)} there and {list(bs)} in the base{hint}")
                if tdt != bdt:
                    raise TransferlabError(f"dtype mix: tensor {k} is {str(tdt).replace('torch.', '')} in {t.label} "
                                           f"and {str(bdt).replace('torch.', '')} in the base; convert the "
                                           "checkpoints to one dtype first")

    def _buffers(self, keys: list[str], src: Source) -> list[str]:
        """Those of ``keys`` (tensors of ``src`` that another model lacks) that are buffers, not weights: integer and
        boolean tensors (position ids, counters, masks: never merged, the base's are written), and the buffers of a
        Hugging Face folder's architecture (``position_ids``, rotary ``inv_freq``), which newer transformers versions
        no longer save."""
        if not keys:
            return []
        if any(src.info(k)[1].is_floating_point for k in keys) and not hasattr(self, "_hf_buffers"):
            folder = next((s.path for s in [self.base, *self.tasks] if s.hf and s.path is not None), None)
            self._hf_buffers = hf_buffer_names(folder) if folder is not None else set()
        return [k for k in keys if not src.info(k)[1].is_floating_point or k in getattr(self, "_hf_buffers", ())]

    def progress(self, items: Sequence[str], what: str) -> Iterator[str]:
        with progress_bars(self.show) as bars:
            yield from bars.iterate(items, what, note=str)

    def task_model(self, i: int) -> Any:
        """Task ``i``'s fine-tuned model as a torch module (peft adapters folded in), for data-dependent methods."""
        from ..models import load

        t = self.tasks[i]
        if t.path is None or not t.config:
            raise TransferlabError(f"{self.method_name} runs the models on data, so it needs transferlab fit "
                                   f"directories; {t.label} is not one")
        net = load(t.path, trust_pickle=self.trust_pickle)
        if hasattr(net, "merge_and_unload"):
            cfg, tok = net.transferlab_config, net.transferlab_tokenizer
            net = net.merge_and_unload()
            net.transferlab_config, net.transferlab_tokenizer = cfg, tok
        return net

    def task_data(self, i: int, net: Any, n: int, seed: int) -> Any:
        """Up to ``n`` examples of task ``i``'s dataset (a seeded random subset), preprocessed for ``net``."""
        import numpy as np
        import torch

        from ..data import Dataset, load_dataset
        from ..models import model_inputs

        ds = self.data[i] if self.data else None
        if not isinstance(ds, Dataset):
            ds = load_dataset(ds, "train")
        data = model_inputs(net, ds)
        if len(data) > n:
            idx = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
            data = torch.utils.data.Subset(data, idx.tolist())
        return data

    def run(self, write: Callable[[str, Any], None], patch: Callable[[str, Any, Any], None], *,
            copies: bool = False) -> None:
        """Merge every tensor in the base's order, handing each to ``write``; then the method's late ``patch``-es.
        A plain weighted sum (``average``, ``linear``, ``task_arithmetic`` over models whose task vectors are
        differences of tensors) is streamed (``_weighted``): no task vector formed, the base read only if needed;
        ``copies``: ``write`` copies the tensor at once (a file), so the sums reuse one buffer."""
        self.method.prepare(self)
        plan = self.method.weighted_sum(len(self.tasks)) if streamable(self.tasks) else None
        scratch = Scratch() if copies else None
        done: dict[str, Any] = {}
        for key in self.progress(self.keys, f"merge ({self.method_name})"):
            if key in self.aliases:  # a tied tensor: the result merged under its first name
                write(key, done[self.aliases[key]])
                continue
            dtype = self.base.info(key)[1]
            if plan is not None and dtype.is_floating_point and key not in self.from_base:
                n = len(self.tasks)  # running statistics: the mean of the models' (as below)
                coefs, observer = ((0.0, [1 / n] * n), None) if is_norm_statistic(key) else (plan, self.observer)
                out = weighted_sum(key, self.base, self.tasks, coefs, observer, scratch).to(dtype).contiguous()
                if key in self.aliased and scratch is not None:
                    out = out.clone()  # kept for its tied names: not the scratch buffer
            else:
                out = self._merge_tensor(key)
            if key in self.aliased:
                done[key] = out
            write(key, out)
        self.method.finish(lambda key, idx, fn: [patch(k, idx, fn) for k in [key, *self.tied_to(key)]])

    def _merge_tensor(self, key: str) -> Any:
        """One tensor merged by the method from the task vectors over the base (buffers: the base's own)."""
        import torch

        b = self.base.get(key)
        if not b.is_floating_point() or key in self.from_base:  # integer buffers (counters), lacking buffers
            return b
        bc = b.to(compute_dtype(b))  # half-precision task vectors are formed in float32
        deltas = [t.delta(key, bc) for t in self.tasks]
        if is_norm_statistic(key):  # running means/variances are not weights: average them (stays valid)
            out = torch.stack(thetas_of(b, deltas)).mean(0)
            if hasattr(self.method, "observe_norm_statistic"):  # a method that keeps every task's own
                self.method.observe_norm_statistic(key, b, deltas)
        else:
            if self.observer is not None:  # the mergeability check (``_compat``), in the same pass
                self.observer(key, b, deltas)
            out = self.method.merge_tensor(key, b, deltas)
        return out.to(b.dtype).contiguous()

    def tied_to(self, key: str) -> list[str]:
        return [k for k, v in self.aliases.items() if v == key]

    def close(self) -> None:
        for s in self.sources:
            s.close()


def hf_buffer_names(d: Path) -> set[str]:
    """The buffers (not trained: ``position_ids``, rotary ``inv_freq``, causal masks) of the transformers model a
    Hugging Face folder's ``config.json`` describes, built on the meta device (no memory, no weights); empty when
    transformers cannot build it here."""
    try:
        import torch
        import transformers

        cfg = transformers.AutoConfig.from_pretrained(str(d))
        cls = next((c for a in (cfg.architectures or []) if (c := getattr(transformers, a, None)) is not None), None)
        with torch.device("meta"):
            net = cls(cfg) if cls is not None else transformers.AutoModel.from_config(cfg)
    except Exception as exc:  # noqa: BLE001  (custom code, an unknown model type: no buffer is known)
        log.info("cannot build %s on the meta device to list its buffers (%s)", d, exc)
        return set()
    return {n for n, _ in net.named_buffers()}


def _same(a: Any, b: Any) -> bool:
    import torch

    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


NORM_STATISTICS = (".running_mean", ".running_var")


def is_norm_statistic(key: str) -> bool:
    """Batch-norm running statistics (torch's names): averaged by every method. Task arithmetic on them can drive a
    variance negative (measured: 4 Lite0 fine-tunes, lam = 0.3, every prediction one class)."""
    return key.endswith(NORM_STATISTICS)


def _label(m: Any) -> str:
    return "state dict" if isinstance(m, dict) else Path(str(m)).name or str(m)


