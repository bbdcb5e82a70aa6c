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

from .._io import copy_inside
from .._runtime import in_runtime
from .._version import __version__
from ..errors import TransferlabError
from ._arith import compute_dtype
from ._job import _Job, is_norm_statistic
from ._registry import MERGE_METHODS
from ._settings import MergeSettings
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
    checks: list[dict[str, Any]] = field(default_factory=list)  # each head beside its own fit (``_health``)
    warnings: list[str] = field(default_factory=list)
    mergeability: Any = None  # ``_compat.MergeCheck``: the task vectors' sizes, cosines, sign conflicts

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": None if self.out_dir is None else str(self.out_dir), "method": self.method,
                "options": self.options, "heads": self.heads, "seconds": self.seconds,
                "peak_rss_mb": self.peak_rss_mb, "tasks": self.tasks, "checks": self.checks,
                "warnings": self.warnings, "tables": [t.to_dict() for t in self.tables()],
                "mergeability": None if self.mergeability is None else self.mergeability.to_dict()}

    def tables(self) -> list[Any]:
        """The declared table of the check on data (none without one)."""
        from ..report import Column, Table
        from ._health import EXAMPLES, FAR_BELOW

        if not self.checks:
            return []
        return [Table("Each head of the merged model beside its own fit", [
            Column("task", "task"), Column("examples", "examples", "count"), Column("chance", "chance", "number", 3),
            Column("fit", "its own fit", "number", 3), Column("merged", "merged head", "number", 3, strong=True),
            Column("delta", "difference", "points", 1)], self.checks, name="merge:check", notes=[
            f"Accuracy on the same held-out examples (each task's test split, at most {EXAMPLES}, stratified) for the "
            f"fine-tuned model and the merged model's head of that task; a head {100 * FAR_BELOW:.0f} points or more "
            "below its fit, or at chance, is warned about."], verdicts=list(self.warnings))]


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


@in_runtime
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
    from .._registry import check_options
    from ..models import RunOutput

    options = check_options(method, MERGE_METHODS.get(method), options)  # before any work
    s = MergeSettings(method, base, models, Path(out), options, data=data, names=names, head_prefix=head_prefix,
                      trust_pickle=trust_pickle, progress=progress, reset_norms=reset_norms,
                      reset_examples=reset_examples)
    if s.reset_norms and not s.data:
        raise TransferlabError("reset_norms re-estimates batch-norm statistics on data: give one dataset per model "
                               "(--data)")
    t0 = time.perf_counter()
    # the one owner of an output's lifecycle: a folder holding anything transferlab did not write is never
    # replaced, our own earlier output only with ``overwrite``; the merge streams into a sibling swapped in when
    # complete
    with RunOutput(s.out, model=_identity(base), method="merge", what="merge", overwrite=overwrite,
                   inputs=[base, *models, *(data or [])], resumable=False, need_bytes=_size_of(base)) as output:
        job = _open_job(s)
        try:
            task_names = _task_names(s.names, job)
            with output.staged() as tmp:
                return _write_output(tmp, job, s, task_names, (t0, output))
        finally:
            job.close()


def _identity(base: Any) -> str:
    """The base as the output's card names it (what makes an existing output "this merge")."""
    return str(base) if isinstance(base, (str, Path)) else "state dict"


def _open_job(s: MergeSettings) -> _Job:
    """The merge's job (its inputs opened and checked); with ``reset_norms``, closed and refused unless the merged
    network's batch-norm statistics can be re-estimated."""
    job = _Job(s.method, s.base, s.models, data=s.data, head_prefix=s.head_prefix, trust_pickle=s.trust_pickle,
               progress=s.progress, options=s.options)
    if s.reset_norms:
        why = (f"{len(job.data or [])} datasets for {len(job.tasks)} models" if len(job.data or []) != len(job.tasks)
               else "this model has no batch-norm layer" if not any(is_norm_statistic(k) for k in job.keys)
               else "it runs the merged model, so the models must be transferlab fit directories (their config "
                    "describes the architecture)" if not (job.tasks[0].config or {}).get("architecture") else None)
        if why:
            job.close()
            raise TransferlabError(f"reset_norms: {why}")
    return job


def _task_names(names: Sequence[str] | None, job: _Job) -> list[str]:
    """One file-safe, distinct name per model: ``names``, else each model's folder name (``task<i>`` without one)."""
    taken: set[str] = set()
    task_names = [_safe_name(str(n), taken) for n in names] if names else [
        _safe_name(t.path.name if t.path else f"task{i + 1}", taken) for i, t in enumerate(job.tasks)]
    if len(task_names) != len(job.tasks):
        raise TransferlabError(f"{len(task_names)} names for {len(job.tasks)} models")
    return task_names


def _write_output(tmp: Path, job: _Job, s: MergeSettings, task_names: list[str],
                  run: tuple[float, Any]) -> MergeResult:
    """Write the whole merge into the temporary directory ``tmp``, step by step (the check on data and the report
    last); return its result. ``run``: when it began, its ``RunOutput``."""
    from .._io import write_text_atomic
    from ..report import merge_report_html
    from ._compat import Observer
    from ._health import check_heads

    t0, output = run
    heads, first_head = _write_heads(tmp, job, task_names)
    job.observer = Observer(task_names)
    _write_network(tmp, job, first_head)
    compat = job.observer.result([job.base, *job.tasks], job.base_ref)
    task_files = _write_task_tensors(tmp, job, task_names)
    _write_card(tmp, job, s, (heads, task_names, task_files), output)
    _copy_model_files(tmp, job, heads)
    if s.reset_norms:
        from ._norms import reestimated_norms
        from ._stream import overwrite_tensors

        overwrite_tensors(tmp / "model.safetensors", reestimated_norms(tmp, job, s.reset_examples))
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for w in compat.warnings:
        log.warning("%s", w)
    checks, warnings = check_heads(tmp, job, task_names)
    result = MergeResult(s.out, s.method, job.method.options(), heads, seconds, rss, task_names, checks, warnings,
                         compat)
    _write_merge_json(tmp, job, result)
    _write_recipe(tmp, job, s, task_names)
    write_text_atomic(tmp / "report.html", merge_report_html(result.to_dict()))
    return result


def _write_heads(tmp: Path, job: _Job,
                 task_names: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each task's head as ``heads/<task>.safetensors`` (none when no model has a head: plain Hugging Face folders
    and state dicts); return their records and the first task's head tensors (``model.safetensors`` holds them)."""
    from safetensors.torch import save_file

    heads: dict[str, dict[str, Any]] = {}
    first_head: dict[str, Any] = {}
    has_heads = any(t.head_keys() for t in job.tasks)
    if has_heads:
        (tmp / "heads").mkdir()
    for i, (t, name) in enumerate(zip(job.tasks, task_names, strict=True)):
        state = {k: t.get(k).contiguous() for k in t.head_keys()}
        if not state and job.head_prefix:
            log.warning("%s has no head tensors (head prefix %r)", t.label, job.head_prefix)
        if not has_heads:
            continue
        save_file(state, str(tmp / "heads" / f"{name}.safetensors"), metadata={"transferlab_version": __version__})
        cfg = t.config or {}
        w = next((v for k, v in state.items() if k.endswith("weight")), None)
        n_cls = int(cfg.get("num_classes") or (w.shape[0] if w is not None else 0))
        heads[name] = {"file": f"heads/{name}.safetensors", "num_classes": n_cls,
                       "class_names": list(cfg.get("class_names") or [str(c) for c in range(n_cls)]),
                       "source": str(t.path) if t.path else t.label}
        if i == 0:
            first_head = state
    return heads, first_head


def _write_network(tmp: Path, job: _Job, first_head: dict[str, Any]) -> None:
    """Stream the merged network, tensor by tensor, and then ``first_head`` into ``model.safetensors``; on any
    failure the file is closed unfinished (``atomic_dir`` removes it)."""
    from ._stream import SafetensorsWriter

    entries = [(k, job.base.info(k)[1], job.base.info(k)[0]) for k in job.keys]
    entries += [(k, v.dtype, tuple(v.shape)) for k, v in first_head.items()]
    writer = SafetensorsWriter(tmp / "model.safetensors", entries,
                               metadata={"transferlab_version": __version__, "format": "pt"})

    def patch(key: str, idx: Any, fn: Any) -> None:
        b = job.base.get(key)
        writer.patch(key, idx, fn(b.reshape(-1)[idx].to(compute_dtype(b))))

    try:
        job.run(writer.write, patch, copies=True)
        for k, v in first_head.items():
            writer.write(k, v)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def _write_task_tensors(tmp: Path, job: _Job, task_names: list[str]) -> dict[str, str]:
    """The method's per-task tensors, if it has any (``tsv_compress``: each task's model as factors over the base),
    as ``tasks/<task>.safetensors``; return their files by task."""
    from safetensors.torch import save_file

    task_files = {}
    per_task = getattr(job.method, "task_tensors", None) or []
    for name, tensors in zip(task_names if per_task else [], per_task, strict=True):
        (tmp / "tasks").mkdir(exist_ok=True)
        save_file(tensors, str(tmp / "tasks" / f"{name}.safetensors"), metadata={"transferlab_version": __version__})
        task_files[name] = f"tasks/{name}.safetensors"
    return task_files


def _write_card(tmp: Path, job: _Job, s: MergeSettings, written: tuple[dict[str, Any], list[str], dict[str, str]],
                output: Any) -> None:
    """The merged model's card, ``transferlab.json`` (and timm's ``config.json`` for a timm network): a
    :class:`~transferlab.models.ModelCard`, or a :class:`~transferlab.models.FolderCard` for a merge of plain
    Hugging Face folders (no architecture to rebuild). ``written``: the heads, task names and per-task files."""
    from ..models import FolderCard, ModelCard, save_card

    heads, task_names, task_files = written
    fields = _merged_fields(job, heads, task_names, s)
    if task_files:
        fields["merge"]["task_weights"] = task_files
    save_card(tmp, output.card(ModelCard if "architecture" in fields else FolderCard, **fields))


def _copy_model_files(tmp: Path, job: _Job, heads: dict[str, dict[str, Any]]) -> None:
    """The first task's ``tokenizer`` folder and the Hugging Face files (``config.json``, tokenizer files: the
    base's first) of the inputs; ``copy_inside`` and ``copy_hf_files`` refuse links out of an input folder."""
    from ._hf_folder import copy_hf_files

    first = job.tasks[0]
    if first.path is not None and (first.path / "tokenizer").is_dir():
        copy_inside(first.path / "tokenizer", first.path, tmp / "tokenizer")
    # after the card: transformers' config.json is the one a Hugging Face folder needs (the first task's when
    # model.safetensors holds its head)
    copy_hf_files([first, job.base, *job.tasks] if heads else [job.base, *job.tasks], tmp)
    # a merge of transferlab text fits is a Hugging Face folder too: transformers' config.json (in place of an
    # input's), the tokenizer at the top level, a README.md card
    import json

    from ..models import CARD_FILE, write_hf_files
    from ._hf_folder import record_heads

    write_hf_files(tmp, json.loads((tmp / CARD_FILE).read_text()))
    record_heads(tmp, heads)  # its config.json says there is one head per task, and which one it holds


def _write_merge_json(tmp: Path, job: _Job, r: MergeResult) -> None:
    """``merge.json``: the method, its resolved options, the time and memory taken, the tensors and heads, the check
    on data and its warnings."""
    from .._io import write_json_atomic

    write_json_atomic(tmp / "merge.json", {"method": r.method, "options": r.options, "seconds": r.seconds,
                                           "peak_rss_mb": r.peak_rss_mb, "tensors": len(job.keys),
                                           "heads": list(r.heads), "checks": r.checks, "warnings": r.warnings,
                                           "mergeability": r.mergeability.to_dict() if r.mergeability else None,
                                           "transferlab_version": __version__})


def _write_recipe(tmp: Path, job: _Job, s: MergeSettings, task_names: list[str]) -> None:
    """``merge.yaml``, the recipe that repeats this merge (``_recipe``)."""
    from .._io import write_text_atomic
    from ._recipe import RECIPE_FILE, recipe_text

    write_text_atomic(tmp / RECIPE_FILE, recipe_text(s, task_names, job.head_prefix))


def _size_of(ref: Any) -> int:
    """Bytes of a local model (a file, or the weight files of a directory): what the merged model will need; 0 for a
    reference that is not a local path."""
    if not isinstance(ref, (str, Path)) or not Path(ref).exists():
        return 0
    p = Path(ref)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.glob("*.safetensors"))


def _merged_fields(job: _Job, heads: dict[str, Any], names: list[str], s: MergeSettings) -> dict[str, Any]:
    """The merged model's card fields (``RunOutput.card`` adds the version and format); its local paths relative to
    the output (``models.recorded_reference``)."""
    from ..models import portable, recorded_path, recorded_reference

    options, reset_norms, out = s.options, s.reset_norms, s.out
    first = (job.tasks[0].config or {}) if not job.tasks[0].hf else {}  # transformers' config is not a card
    keep = ("modality", "architecture", "image_size", "mean", "std", "interpolation", "max_length")
    h0 = heads[names[0]] if heads else {"num_classes": 0, "class_names": []}
    base_ref = job.base_ref or first.get("model")
    recorded_heads = {n: {**h, "source": recorded_path(t.path, out) if t.path else t.label}
                      for (n, h), t in zip(heads.items(), job.tasks, strict=True)} if heads else {}
    return {"model": recorded_reference(base_ref, out) if base_ref else None, "weights": "state_dict", "structure": {},
            **{k: first[k] for k in keep if k in first}, "num_classes": h0["num_classes"],
            "class_names": h0["class_names"], "head": job.head_prefix if heads else None,
            "heads": recorded_heads or None,
            "merge": {"method": job.method_name, "options": portable({**options, **job.method.options()}, out),
                      "norm_statistics": "re-estimated on the data" if reset_norms else "averaged",
                      "base": recorded_reference(job.base_ref, out) if job.base_ref else "state dict",
                      "models": [recorded_path(t.path, out) if t.path else t.label for t in job.tasks]}}
