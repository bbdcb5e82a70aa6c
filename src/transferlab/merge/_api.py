"""``merge(method, base, finetuned)`` -> merged state dict; ``merge_models(...)`` -> a model directory with one head
per task."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import TransferlabError
from ._arith import compute_dtype, thetas_of
from ._registry import MERGE_METHODS
from ._sources import DictSource, Source, open_source
from ._stream import SUPPORTED_DTYPES

log = logging.getLogger(__name__)


def list_methods(pattern: str | None = None) -> list[str]:
    """Names of the registered merge methods."""
    return MERGE_METHODS.list(pattern)


@dataclass
class MergeResult:
    out_dir: Path | None
    method: str
    options: dict[str, Any]
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


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
        self.float_keys = [k for k in self.keys if self.base.info(k)[1].is_floating_point]
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
        from ..fit import architecture_key

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
            if t.numel() == 0:
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
        for t in self.tasks:
            have = [k for k in t.keys() if not t.is_head(k)]
            missing = [k for k in self.keys if k not in set(have)]
            extra = [k for k in have if k not in want]
            if missing or extra:
                k = (missing or extra)[0]
                raise TransferlabError(
                    f"{t.label} and the base differ in architecture: tensor {k} is only in "
                    f"{'the base' if missing else t.label}{hint}")
            for k in self.keys:
                (ts, tdt), (bs, bdt) = t.info(k), want[k]
                if ts != bs:
                    raise TransferlabError(f"{t.label} and the base differ in architecture: tensor {k} has shape "
                                           f"{list(ts)} there and {list(bs)} in the base{hint}")
                if str(bdt).replace("torch.", "") not in SUPPORTED_DTYPES:
                    raise TransferlabError(f"tensor {k} is {bdt}, a dtype merging does not handle; convert the "
                                           "checkpoints first")
                if tdt != bdt:
                    raise TransferlabError(f"dtype mix: tensor {k} is {str(tdt).replace('torch.', '')} in {t.label} "
                                           f"and {str(bdt).replace('torch.', '')} in the base; convert the "
                                           "checkpoints to one dtype first")

    def progress(self, items: Sequence[str], what: str) -> Iterator[str]:
        if not self.show:
            yield from items
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[key]}")) as bar:
            task = bar.add_task(what, total=len(items), key="")
            for k in items:
                bar.update(task, key=k)
                yield k
                bar.advance(task)

    def task_model(self, i: int) -> Any:
        """Task ``i``'s fine-tuned model as a torch module (peft adapters folded in), for data-dependent methods."""
        from ..fit import load

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
        from ..fit import model_inputs

        ds = self.data[i] if self.data else None
        if not isinstance(ds, Dataset):
            ds = load_dataset(ds, "train")
        data = model_inputs(net, ds)
        if len(data) > n:
            idx = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
            data = torch.utils.data.Subset(data, idx.tolist())
        return data

    def run(self, write: Callable[[str, Any], None], patch: Callable[[str, Any, Any], None]) -> None:
        import torch

        self.method.prepare(self)
        done: dict[str, Any] = {}
        for key in self.progress(self.keys, f"merge ({self.method_name})"):
            if key in self.aliases:  # a tied tensor: the result merged under its first name
                write(key, done[self.aliases[key]])
                continue
            b = self.base.get(key)
            if not b.is_floating_point():  # integer buffers (batch-norm counters): the base's
                if key in self.aliased:
                    done[key] = b
                write(key, b)
                continue
            bc = b.to(compute_dtype(b))  # half-precision task vectors are formed in float32
            deltas = [t.delta(key, bc) for t in self.tasks]
            if is_norm_statistic(key):  # running means/variances are not weights: average them (stays valid)
                out = torch.stack(thetas_of(b, deltas)).mean(0)
            else:
                out = self.method.merge_tensor(key, b, deltas)
            out = out.to(b.dtype).contiguous()
            if key in self.aliased:
                done[key] = out
            write(key, out)
        self.method.finish(lambda key, idx, fn: [patch(k, idx, fn) for k in [key, *self.tied_to(key)]])

    def tied_to(self, key: str) -> list[str]:
        return [k for k, v in self.aliases.items() if v == key]

    def close(self) -> None:
        for s in self.sources:
            s.close()


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


def merge(method: str, base: Any, finetuned: Sequence[Any], *, data: Sequence[Any] | None = None,
          head_prefix: str | None = None, trust_pickle: bool = False, progress: bool = False,
          **options: Any) -> dict[str, Any]:
    """Merge ``finetuned`` models (state dicts, ``.safetensors`` paths or fit directories; peft LoRA directories
    through their full ``B @ A`` updates) that started from ``base`` (the same kinds, or a model reference).

    Returns the merged state dict of the shared network. Task heads (``head_prefix``, found from fit directories) are
    not merged and not returned: :func:`merge_models` saves them, one per task. ``data``: one dataset per model for the
    data-dependent methods (``fisher``, ``regmean``, ``atlas``). ``options`` go to the method (``list_methods()``,
    ``MERGE_METHODS.meta(name)``)."""
    job = _Job(method, base, finetuned, data=data, head_prefix=head_prefix, trust_pickle=trust_pickle,
               progress=progress, options=options)
    out: dict[str, Any] = {}

    def write(key: str, t: Any) -> None:
        if key in job.aliases:  # tied names stay tied: one tensor object
            out[key] = out[job.aliases[key]]
        else:  # never hand back the caller's own base tensors
            out[key] = t.clone() if isinstance(job.base, DictSource) and t is job.base.state.get(key) else t

    def patch(key: str, idx: Any, fn: Any) -> None:
        if key in job.aliases:  # the same tensor object as its first name's: patched with it
            return
        flat = out[key].reshape(-1)
        flat[idx] = fn(job.base.get(key).reshape(-1)[idx].to(flat.dtype)).to(flat.dtype)

    try:
        job.run(write, patch)
    finally:
        job.close()
    return out


def _safe_name(name: str, taken: set[str]) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "task"
    out, i = s, 2
    while out in taken:
        out, i = f"{s}_{i}", i + 1
    taken.add(out)
    return out


def merge_models(method: str, base: Any, models: Sequence[Any], out: str | Path, *,
                 data: Sequence[Any] | None = None, names: Sequence[str] | None = None, overwrite: bool = False,
                 head_prefix: str | None = None, trust_pickle: bool = False, progress: bool = False,
                 reset_norms: bool = False, reset_examples: int = 256, **options: Any) -> MergeResult:
    """Merge ``models`` into ``out``: ``model.safetensors`` (the merged network with the first task's head, so it
    loads like a fit output and in timm), ``heads/<task>.safetensors`` (every task's head), ``config.json`` (a fit
    config plus ``heads`` and ``merge``) and ``merge.json``. ``transferlab.fit.load(out, head=task)`` and
    ``transferlab predict --head`` use any head. Written tensor by tensor into a temporary directory that replaces
    ``out`` only when complete: a failed merge leaves nothing behind.

    ``reset_norms``: re-estimate the merged network's batch-norm statistics on ``data`` (``reset_examples`` per task)
    instead of averaging the fine-tuned models' statistics."""
    from safetensors.torch import save_file

    from .._io import write_json_atomic
    from ._stream import SafetensorsWriter

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise TransferlabError(f"{out} already exists; choose another --out or pass --overwrite")
    if reset_norms and not data:
        raise TransferlabError("reset_norms re-estimates batch-norm statistics on data: give one dataset per model "
                               "(--data)")
    t0 = time.perf_counter()
    job = _Job(method, base, models, data=data, head_prefix=head_prefix, trust_pickle=trust_pickle,
               progress=progress, options=options)
    if reset_norms:
        why = (f"{len(job.data or [])} datasets for {len(job.tasks)} models" if len(job.data or []) != len(job.tasks)
               else "this model has no batch-norm layer" if not any(is_norm_statistic(k) for k in job.keys)
               else "it runs the merged model, so the models must be transferlab fit directories (their config "
                    "describes the architecture)" if not (job.tasks[0].config or {}).get("architecture") else None)
        if why:
            job.close()
            raise TransferlabError(f"reset_norms: {why}")
    tmp: Path | None = None
    writer: SafetensorsWriter | None = None
    try:
        taken: set[str] = set()
        task_names = [_safe_name(str(n), taken) for n in names] if names else [
            _safe_name(t.path.name if t.path else f"task{i + 1}", taken) for i, t in enumerate(job.tasks)]
        if len(task_names) != len(job.tasks):
            raise TransferlabError(f"{len(task_names)} names for {len(job.tasks)} models")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output directory is an ordinary one
        (tmp / "heads").mkdir()
        heads: dict[str, dict[str, Any]] = {}
        first_head: dict[str, Any] = {}
        for i, (t, name) in enumerate(zip(job.tasks, task_names, strict=True)):
            hk = t.head_keys()
            state = {k: t.get(k).contiguous() for k in hk}
            if not state and job.head_prefix:
                log.warning("%s has no head tensors (head prefix %r)", t.label, job.head_prefix)
            save_file(state, str(tmp / "heads" / f"{name}.safetensors"),
                      metadata={"transferlab_version": __version__})
            cfg = t.config or {}
            w = next((v for k, v in state.items() if k.endswith("weight")), None)
            n_cls = int(cfg.get("num_classes") or (w.shape[0] if w is not None else 0))
            heads[name] = {"file": f"heads/{name}.safetensors", "num_classes": n_cls,
                           "class_names": list(cfg.get("class_names") or [str(c) for c in range(n_cls)]),
                           "source": str(t.path) if t.path else t.label}
            if i == 0:
                first_head = state
        entries = [(k, job.base.info(k)[1], job.base.info(k)[0]) for k in job.keys]
        entries += [(k, v.dtype, tuple(v.shape)) for k, v in first_head.items()]
        writer = SafetensorsWriter(tmp / "model.safetensors", entries,
                                   metadata={"transferlab_version": __version__, "format": "pt"})
        w_ = writer

        def patch(key: str, idx: Any, fn: Any) -> None:
            b = job.base.get(key)
            w_.patch(key, idx, fn(b.reshape(-1)[idx].to(compute_dtype(b))))

        job.run(writer.write, patch)
        for k, v in first_head.items():
            writer.write(k, v)
        writer.close()
        writer = None
        config = _merged_config(job, heads, task_names, options, reset_norms)
        write_json_atomic(tmp / "config.json", config)
        first = job.tasks[0]
        if first.path is not None and (first.path / "tokenizer").is_dir():
            shutil.copytree(first.path / "tokenizer", tmp / "tokenizer")
        if reset_norms:
            from ._stream import overwrite_tensors

            overwrite_tensors(tmp / "model.safetensors", _reestimated_norms(tmp, job, reset_examples))
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        write_json_atomic(tmp / "merge.json", {"method": method, "options": job.method.options(),
                                               "seconds": seconds, "peak_rss_mb": rss, "tensors": len(job.keys),
                                               "heads": list(heads), "transferlab_version": __version__})
        _replace_dir(tmp, out)
        tmp = None
        return MergeResult(out, method, job.method.options(), heads, seconds, rss)
    finally:
        if writer is not None:
            writer.abort()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        job.close()


def _reestimated_norms(model_dir: Path, job: _Job, examples: int) -> dict[str, Any]:
    """Batch-norm running statistics of the merged network, recomputed on ``examples`` of each task's data (a
    cumulative average over every batch of every task; the merged weights change the features the statistics of the
    fine-tuned models were computed on)."""
    import torch

    from ..fit import load

    net = load(model_dir)
    norms = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    if not norms:
        raise TransferlabError("reset_norms: this model has no batch-norm layer")
    net.eval()
    for m in norms.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    with torch.no_grad():
        for i in range(len(job.tasks)):
            data = job.task_data(i, net, examples, 0)
            lone = len(data) > 32 and len(data) % 32 == 1  # a batch of one: batch norm cannot train on it
            for x, _ in torch.utils.data.DataLoader(data, batch_size=32, drop_last=lone):
                net(x)
    state = net.state_dict()
    return {f"{n}.{s}": state[f"{n}.{s}"].to(job.base.info(f"{n}.{s}")[1]).contiguous() for n in norms
            for s in ("running_mean", "running_var", "num_batches_tracked") if f"{n}.{s}" in state}


def _merged_config(job: _Job, heads: dict[str, Any], names: list[str], options: dict[str, Any],
                   reset_norms: bool) -> dict[str, Any]:
    first = job.tasks[0].config or {}
    keep = ("modality", "architecture", "image_size", "mean", "std", "max_length")
    h0 = heads[names[0]]
    base_ref = job.base_ref or first.get("model")
    return {"model": base_ref, "method": "merge", "transferlab_version": __version__, "format": 1,
            **{k: first[k] for k in keep if k in first}, "num_classes": h0["num_classes"],
            "class_names": h0["class_names"], "head": job.head_prefix, "heads": heads,
            "merge": {"method": job.method_name, "options": {**options, **job.method.options()},
                      "norm_statistics": "re-estimated on the data" if reset_norms else "averaged",
                      "base": str(job.base_ref) if job.base_ref else "state dict",
                      "models": [str(t.path) if t.path else t.label for t in job.tasks]}}


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        try:
            os.replace(out, trash / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(trash / out.name, out)
                raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)

