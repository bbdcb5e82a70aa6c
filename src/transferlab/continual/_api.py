"""``run``: one model adapted to a stream of tasks on the one training loop, with the accuracy matrix and the GEM
metrics (ACC, BWT, FWT, forgetting)."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import check_options
from .._runtime import in_runtime
from .._version import __version__
from ..errors import TransferlabError
from ..models import RunOutput, RunResult
from ..train import on_devices
from ._strategies import STRATEGIES
from ._streams import Stream, parse_stream

log = logging.getLogger(__name__)
DEFAULT_LR = 1e-3


def list_strategies() -> list[str]:
    """The continual strategies (``cuber``, ``ease``, ``ewc``, ``exssnet``, ``gpm``, ``joint``, ``lwf``, ``naive``,
    ``prototype``, ``ranpac``, ``replay``, ``supsup``)."""
    return STRATEGIES.list()


class ContinualResult(RunResult):
    """A continual run: ``model`` holds the run's modules (``backbone``, ``heads``...), ``metrics`` the accuracy
    matrix and the GEM metrics, ``history`` each task's per-epoch history."""

    @property
    def modules(self) -> dict[str, Any]:
        return self.model

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.metrics["accuracy_matrix"], dtype=float)


@on_devices
@in_runtime
def run(
    stream: Stream | str | Sequence[Any] | None = None,
    model: str = "",
    strategy: str = "naive",
    *,
    split: str | None = None,
    epochs: int = 5,
    lr: float | None = None,
    batch_size: int = 32,
    image_size: int | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
    progress: bool = False,
    trust_pickle: bool = False,
    **options: Any,
) -> ContinualResult:
    """Train ``model`` on the tasks of ``stream`` in turn with ``strategy``; after each task, every task's test
    accuracy fills one row of the accuracy matrix R (row -1: before any training, b).

    ``stream``: a :class:`Stream`, comma-separated dataset references or a list of datasets (task-incremental: a head
    per task), or a stream YAML; ``split``: ``DATA:K`` (class-incremental: K groups of classes, one growing head).
    ``limit``/``test_limit``: class-stratified samples of each task's splits. With ``out``: the final model directory
    (one head per task, ``transferlab.models.load(out, head=TASK)``), ``metrics.json`` and ``report.html``."""
    if strategy not in STRATEGIES:
        raise TransferlabError(f"unknown continual strategy {strategy!r}; known: {', '.join(list_strategies())}")
    factory = STRATEGIES.get(strategy)
    options = check_options(strategy, factory, options, caller=("run", run))
    strat = factory(**options)
    from ..train import check_run_arguments

    check_run_arguments(epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size, min_batch_size=2)
    if not model:
        raise TransferlabError("no model: give a model reference (e.g. builtin:small_resnet_shapes)")
    s = stream if isinstance(stream, Stream) else parse_stream(stream, split, limit=limit, test_limit=test_limit)
    strat.check(s, strategy)
    job = _ContinualJob(model, strategy, strat, options, epochs=epochs, lr=lr or DEFAULT_LR, batch_size=batch_size,
                        image_size=image_size, seed=seed, progress=progress, trust_pickle=trust_pickle)
    # no checkpoints: a stream's runs are short, and the output is written once, at the end
    with RunOutput(out, model=model, method=f"continual:{strategy}", what="continual run", overwrite=overwrite,
                   inputs=[model.split("@")[-1]], resumable=False) as output:
        return _run(s, job, output)


@dataclass(frozen=True)
class _ContinualJob:
    """One continual run's settings, as :func:`run` checked them."""

    model: str
    name: str
    strat: Any
    options: dict[str, Any]
    epochs: int
    lr: float
    batch_size: int
    image_size: int | None
    seed: int
    progress: bool
    trust_pickle: bool


def _run(s: Stream, j: _ContinualJob, output: RunOutput) -> ContinualResult:
    from ..models import build, resolve
    from ..train import seed_everything
    from ._run import Run, Training

    model, name, strat, options, seed = j.model, j.name, j.strat, j.options, j.seed
    epochs, lr, batch_size = j.epochs, j.lr, j.batch_size
    seed_everything(seed)
    backbone = resolve(model, j.trust_pickle)
    if backbone.modality != s.modality:
        raise TransferlabError(f"{model} takes {backbone.modality} input; the stream holds {s.modality} data")
    built = build(backbone, 0)
    if built.modality == "image":
        built.image_size = int(j.image_size or backbone.default_size(s.tasks[0].train))
    r = Run(s, built, strat, seed)
    strat.install(r)
    t_n = len(s.tasks)
    # b: the untrained model on each task (class splits: every task's classes are masked until trained, so 0)
    before = [r.accuracy(j, t_n - 1) if s.kind == "task" else 0.0 for j in range(t_n)]
    rows: list[list[float]] = []
    history: list[list[dict[str, Any]]] = []
    training = Training(name, options, epochs, lr, batch_size, seed, j.progress)
    t0 = time.perf_counter()
    task_seconds, eval_seconds = [], 0.0
    for k in strat.steps(t_n):
        t1 = time.perf_counter()
        strat.before_task(r, k)
        history.append(strat.train_task(r, k, strat.task_data(r, k), training))
        strat.after_task(r, k)
        t2 = time.perf_counter()
        row = [r.accuracy(j, k) for j in range(t_n)]
        task_seconds.append(t2 - t1)
        eval_seconds += time.perf_counter() - t2
        rows.append(row)
        log.info("after task %d of %d (%s): %s", k + 1, t_n, s.tasks[k].name, " ".join(f"{a:.3f}" for a in row))
    seconds = time.perf_counter() - t0
    mat = np.asarray(rows, dtype=float)
    sm = strat.summary(mat, before, s.kind)
    extra_params = _extra_params_per_task(r)
    metrics = {
        "strategy": name, "model": model, "options": options, "stream": s.describe(), "kind": s.kind,
        "tasks": [t.name for t in s.tasks], "accuracy_matrix": mat.tolist(), "before": before, **sm,
        "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "train_seconds": seconds,
        "task_seconds": task_seconds, "seconds_per_task": float(np.sum(task_seconds)) / t_n,
        "eval_seconds": eval_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "extra_params_per_task": extra_params, **strat.metrics(r), "n_train": [len(t.train) for t in s.tasks],
        "n_test": [len(t.test) for t in s.tasks], "history": history,
        "metric_note": "GEM definitions (docs/continual.md): R[i][j] = accuracy on task j after training task i; "
                       "ACC = mean of the last row; BWT = mean over j < T of R[T][j] - R[j][j]; FWT = mean over j >= 2 "
                       "of R[j-1][j] - b[j] (task-incremental streams). train_seconds: the whole stream, the accuracy "
                       "matrix's measurements included (eval_seconds of it); task_seconds: each step's learning alone "
                       "(before_task to after_task); seconds_per_task: their sum / the number of tasks",
    }
    if output.out is not None:
        _save(output, r, s, options, metrics, built)
    return ContinualResult(r.modules, metrics, output.out, history)


def _extra_params_per_task(r: Any) -> int:
    """Parameters a new task adds: its head's own (task-incremental; not those it shares with another head, as
    RanPAC's one projection); 0 for the one shared head. A strategy's ``metrics`` may add its own (EASE's
    adapters)."""
    if r.stream.kind == "class":
        return 0
    heads = r.modules["heads"]
    h = heads["1"] if len(heads) > 1 else heads["0"]
    shared = {id(p) for k, o in heads.items() if o is not h for p in o.parameters()}
    return int(sum(p.numel() for p in h.parameters() if id(p) not in shared))


def _save(output: RunOutput, r: Any, s: Stream, options: dict[str, Any], metrics: dict[str, Any],
          built: Any) -> None:
    """An ordinary model directory: the network with the first task's head, every task's head in heads/ (task-
    incremental; ``load(DIR, head=TASK)``), or with the one head over every class (class-incremental)."""
    import copy

    from safetensors.torch import save_file

    from ..models import architecture_of, head_module_name
    from ..report import continual_report_html

    net = copy.deepcopy(r.modules["backbone"]).cpu()  # the run's own modules stay as they are
    heads = r.modules["heads"]
    first = heads["0"]
    per_task = r.strategy.export_tasks_(net, len(s.tasks))  # what each task's head file carries beside its head
    structure = _install_head(net, first)
    prefix = head_module_name(net)
    names = [str(c) for c in (s.class_names if s.kind == "class" else s.tasks[0].class_names)]
    task_names = _file_names([t.name for t in s.tasks])
    task_heads = None
    files: dict[str, Any] = {"report.html": continual_report_html(metrics)}
    if s.kind == "task":
        task_heads = {n: {"file": f"heads/{n}.safetensors", "num_classes": int(heads[str(i)].out_features),
                          "class_names": list(t.class_names)}
                      for i, (n, t) in enumerate(zip(task_names, s.tasks, strict=True))}
        for i, n in enumerate(task_names):
            h = heads[str(i)]
            tensors = {**{f"{prefix}.{k}": v.detach().contiguous().cpu() for k, v in h.state_dict().items()},
                       **per_task[i]}
            files[f"heads/{n}.safetensors"] = (lambda t: lambda path: save_file(
                t, str(path), metadata={"transferlab_version": __version__}))(tensors)
    card = output.card(modality=built.modality, architecture=architecture_of(net), num_classes=first.out_features,
                       class_names=names, **built.preprocessing(), weights="state_dict", structure=structure,
                       options=options, head=prefix, heads=task_heads)
    output.write(net, card, metrics, files=files, tokenizer=built.tokenizer, base=output.model)


def _install_head(net: Any, head: Any) -> dict[str, Any]:
    """Put task 0's ``head`` in the saved network's classifier slot; return the card's ``structure``: ``{}`` for a
    linear head (timm's own classifier), else the head module's (e.g. RanPAC's projection head)."""
    import copy

    import torch

    if isinstance(head, torch.nn.Linear):
        net.reset_classifier(head.out_features)
        with torch.no_grad():
            net.get_classifier().load_state_dict({k: v.cpu() for k, v in head.state_dict().items()})
        return {}
    from ..models import head_module_name, replace_module_

    replace_module_(net, head_module_name(net), copy.deepcopy(head).cpu())
    return head.structure()


def _file_names(names: list[str]) -> list[str]:
    import re

    out, taken = [], set()
    for n in names:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", n).strip("-.") or "task"
        k, cand = 1, base
        while cand in taken:
            k += 1
            cand = f"{base}-{k}"
        taken.add(cand)
        out.append(cand)
    return out
