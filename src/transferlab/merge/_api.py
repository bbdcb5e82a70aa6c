"""``merge(method, base, finetuned)`` -> merged state dict; ``merge_models(...)`` -> a model directory with one head
per task (and its recipe, ``merge.yaml``: see ``_recipe``)."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_dir, copy_inside, refuse_foreign
from .._version import __version__
from ..errors import TransferlabError
from ..models import FORMAT
from ._arith import compute_dtype
from ._job import _Job, is_norm_statistic
from ._registry import MERGE_METHODS
from ._sources import DictSource

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
    tasks: list[str] = field(default_factory=list)  # the merged models' task names

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": None if self.out_dir is None else str(self.out_dir), "method": self.method,
                "options": self.options, "heads": self.heads, "seconds": self.seconds,
                "peak_rss_mb": self.peak_rss_mb, "tasks": self.tasks}


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


def run_recipe(recipe: Any, *, overwrite: bool = False, trust_pickle: bool = False,
               progress: bool = False) -> MergeResult:
    """Run a merge recipe (``resolve_recipe(...)`` / ``load_recipe(...)``) with :func:`merge_models`."""
    return merge_models(**recipe.merge_arguments(), overwrite=overwrite, trust_pickle=trust_pickle, progress=progress)


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
    loads like a fit output and, for timm architectures, in plain timm through the timm ``config.json`` beside it),
    ``heads/<task>.safetensors`` (every task's head, when the models have heads), ``transferlab.json`` (a fit card
    plus ``heads`` and ``merge``; its local paths relative to ``out``), ``merge.json`` and ``merge.yaml`` (the recipe:
    ``transferlab merge --config OUT/merge.yaml --out OTHER`` repeats the merge). ``transferlab.models.load(out,
    head=task)`` and ``transferlab predict --head`` use any head. Hugging Face model folders in, one out: their
    ``config.json`` and tokenizer files are copied (the base's first), so
    ``transformers.AutoModel.from_pretrained(out)`` opens it. Written tensor by tensor into a temporary directory
    that replaces ``out`` only when complete: a failed merge leaves nothing behind.

    ``reset_norms``: re-estimate the merged network's batch-norm statistics on ``data`` (``reset_examples`` per task)
    instead of averaging the fine-tuned models' statistics."""
    from safetensors.torch import save_file

    from .._io import check_output, write_json_atomic, write_text_atomic
    from .._registry import check_options
    from ..models import save_card
    from ._sources import copy_hf_files
    from ._stream import SafetensorsWriter

    out = Path(out)
    options = check_options(method, MERGE_METHODS.get(method), options)  # before any work
    inputs = [base, *models, *(data or [])]
    check_output(out, inputs=[x for x in inputs if isinstance(x, (str, Path))], need_bytes=_size_of(base))
    refuse_foreign(out)  # a folder holding anything transferlab did not write is never replaced
    if out.exists() and any(out.iterdir()) and not overwrite:
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
    writer: SafetensorsWriter | None = None
    try:
        taken: set[str] = set()
        task_names = [_safe_name(str(n), taken) for n in names] if names else [
            _safe_name(t.path.name if t.path else f"task{i + 1}", taken) for i, t in enumerate(job.tasks)]
        if len(task_names) != len(job.tasks):
            raise TransferlabError(f"{len(task_names)} names for {len(job.tasks)} models")
        with atomic_dir(out) as tmp:  # built beside out, swapped in only when complete
            heads: dict[str, dict[str, Any]] = {}
            first_head: dict[str, Any] = {}
            has_heads = any(t.head_keys() for t in job.tasks)  # plain Hugging Face folders and state dicts: none
            if has_heads:
                (tmp / "heads").mkdir()
            for i, (t, name) in enumerate(zip(job.tasks, task_names, strict=True)):
                hk = t.head_keys()
                state = {k: t.get(k).contiguous() for k in hk}
                if not state and job.head_prefix:
                    log.warning("%s has no head tensors (head prefix %r)", t.label, job.head_prefix)
                if not has_heads:
                    continue
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
            task_files = {}
            per_task = getattr(job.method, "task_tensors", None) or []
            for name, tensors in zip(task_names if per_task else [], per_task, strict=True):
                (tmp / "tasks").mkdir(exist_ok=True)  # tsv_compress: each task's model as factors over the base
                save_file(tensors, str(tmp / "tasks" / f"{name}.safetensors"),
                          metadata={"transferlab_version": __version__})
                task_files[name] = f"tasks/{name}.safetensors"
            config = _merged_config(job, heads, task_names, options, reset_norms, out)
            if task_files:
                config["merge"]["task_weights"] = task_files
            save_card(tmp, config)  # transferlab.json, and timm's config.json for a timm network
            first = job.tasks[0]
            if first.path is not None and (first.path / "tokenizer").is_dir():
                copy_inside(first.path / "tokenizer", first.path, tmp / "tokenizer")
            # after the card: transformers' config.json is the one a Hugging Face folder needs (the first task's
            # when model.safetensors holds its head)
            copy_hf_files([first, job.base, *job.tasks] if heads else [job.base, *job.tasks], tmp)
            if reset_norms:
                from ._stream import overwrite_tensors

                overwrite_tensors(tmp / "model.safetensors", _reestimated_norms(tmp, job, reset_examples))
            seconds = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            write_json_atomic(tmp / "merge.json", {"method": method, "options": job.method.options(),
                                                   "seconds": seconds, "peak_rss_mb": rss, "tensors": len(job.keys),
                                                   "heads": list(heads), "transferlab_version": __version__})
            from ._recipe import RECIPE_FILE, _recipe_of

            recipe = _recipe_of(method, base, models, task_names, data, options, job.head_prefix, reset_norms,
                                reset_examples, out)
            write_text_atomic(tmp / RECIPE_FILE, recipe)
        return MergeResult(out, method, job.method.options(), heads, seconds, rss, task_names)
    finally:
        if writer is not None:
            writer.abort()
        job.close()


def _size_of(ref: Any) -> int:
    """Bytes of a local model (a file, or the weight files of a directory): what the merged model will need; 0 for a
    reference that is not a local path."""
    if not isinstance(ref, (str, Path)) or not Path(ref).exists():
        return 0
    p = Path(ref)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.glob("*.safetensors"))


def _reestimated_norms(model_dir: Path, job: _Job, examples: int) -> dict[str, Any]:
    """Batch-norm running statistics of the merged network, recomputed on ``examples`` of each task's data (a
    cumulative average over every batch of every task; the merged weights change the features the statistics of the
    fine-tuned models were computed on)."""
    import torch

    from ..models import load
    from ..train import norm_layers, reestimate_norms_

    net = load(model_dir)
    norms = norm_layers(net)
    if not norms:
        raise TransferlabError("reset_norms: this model has no batch-norm layer")

    def batches() -> Any:  # every batch of every task's data
        for i in range(len(job.tasks)):
            for x, _ in torch.utils.data.DataLoader(job.task_data(i, net, examples, 0), batch_size=32):
                yield x

    reestimate_norms_(net, batches())
    state = net.state_dict()
    return {f"{n}.{s}": state[f"{n}.{s}"].to(job.base.info(f"{n}.{s}")[1]).contiguous() for n in norms
            for s in ("running_mean", "running_var", "num_batches_tracked") if f"{n}.{s}" in state}


def _merged_config(job: _Job, heads: dict[str, Any], names: list[str], options: dict[str, Any],
                   reset_norms: bool, out: Path) -> dict[str, Any]:
    """The merged model's card; its local paths relative to ``out`` (``models.recorded_reference``)."""
    from ..models import portable, recorded_path, recorded_reference

    first = (job.tasks[0].config or {}) if not job.tasks[0].hf else {}  # transformers' config is not a card
    keep = ("modality", "architecture", "image_size", "mean", "std", "max_length")
    h0 = heads[names[0]] if heads else {"num_classes": 0, "class_names": []}
    base_ref = job.base_ref or first.get("model")
    recorded_heads = {n: {**h, "source": recorded_path(t.path, out) if t.path else t.label}
                      for (n, h), t in zip(heads.items(), job.tasks, strict=True)} if heads else {}
    return {"model": recorded_reference(base_ref, out) if base_ref else None, "method": "merge",
            "transferlab_version": __version__, "format": FORMAT, "weights": "state_dict", "structure": {},
            **{k: first[k] for k in keep if k in first}, "num_classes": h0["num_classes"],
            "class_names": h0["class_names"], "head": job.head_prefix if heads else None,
            "heads": recorded_heads or None,
            "merge": {"method": job.method_name, "options": portable({**options, **job.method.options()}, out),
                      "norm_statistics": "re-estimated on the data" if reset_norms else "averaged",
                      "base": recorded_reference(job.base_ref, out) if job.base_ref else "state dict",
                      "models": [recorded_path(t.path, out) if t.path else t.label for t in job.tasks]}}
