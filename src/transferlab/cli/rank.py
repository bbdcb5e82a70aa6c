"""``transferlab rank`` and ``transferlab metrics list``."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import alias, console
from ._runtime import DEVICE_HELP, PRECISION_HELP

metrics_app = typer.Typer(help="Transferability metrics.", no_args_is_help=True)


def rank_cmd(
    data: str = typer.Argument(..., help="Dataset: builtin:NAME, an image folder, a .csv/.jsonl/.npz file."),
    zoo: str = typer.Option(None, "--zoo", "-z", help="Zoo: builtin:vision, builtin:text, a YAML file or "
                            "comma-separated model references. Default: builtin:text for text, builtin:pixels (PCA) for "
                            "feature arrays, else builtin:vision."),
    metrics: str = typer.Option(None, "--metrics", help="Comma-separated metrics (default: all but the opt-in nleep "
                                "and ped)."),
    metrics_m: str = typer.Option(None, "-m", hidden=True, help="Deprecated spelling of --metrics."),
    image_size: int = typer.Option(None, "--image-size", min=8, help="Input resolution for image models (default: each "
                                   "model's native size; 128 for images <= 64 px). Smaller is faster."),
    limit: int = typer.Option(None, "--limit", min=1, help="Use a class-stratified sample of this many examples."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default: runs/rank-DATASET)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Batch size for feature extraction."),
    threads: int = typer.Option(None, "--threads", min=1, help="Limit CPU threads (torch and BLAS)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Feature cache directory (default: $TRANSFERLAB_CACHE, "
                                   "else the user cache directory)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    strict: bool = typer.Option(False, "--strict", help="Fail on unreadable images instead of skipping them."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of a CSV/JSONL dataset."),
    label_column: str = typer.Option("label", "--label-column", help="Label column of a CSV/JSONL dataset."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow pickle weight files (can run code)."),
    ensemble: int = typer.Option(None, "--ensemble", min=1, help="Also choose K models that transfer well together "
                                 "(quality x CKA-diversity determinant, greedy)."),
    backend: str = typer.Option("local", "--backend", help="local (every model in this process) or ray (one Ray "
                                "task per model: its features extracted and cached where the task runs, its scores "
                                "sent back)."),
    address: str = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="The Ray cluster's address (default: "
                                "$RAY_ADDRESS, else a local Ray)."),
    cpus_per_run: float = typer.Option(None, "--cpus-per-run", min=0.01, help="CPUs Ray gives each model (default "
                                       "1)."),
    gpus_per_run: float = typer.Option(None, "--gpus-per-run", min=0, help="GPUs Ray gives each model (default 0)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " With --backend ray: on each model's worker."),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
    layers: str = typer.Option("last", "--layers", help="Which features to score: last (the model's output), mean "
                               "(the mean of its layers' pooled features) or best (every layer scored, each metric's "
                               "best kept)."),
    adaptive: bool = typer.Option(False, "--adaptive", help="Rank in rounds over growing class-stratified subsets, "
                                  "dropping after each round the models whose consensus is below the leader's with "
                                  "--confidence: the forward passes go to the contenders (dropped models are listed "
                                  "below the survivors, the latest dropped first)."),
    confidence: float = typer.Option(0.95, "--confidence", help="With --adaptive: drop a model when its consensus is "
                                     "below the leader's in at least this share of half-samples (0.5 < c < 1)."),
    as_image: bool = typer.Option(False, "--as-image", help="Texts as images for the vision zoo: each text's "
                                  "builtin:minilm_l6 embedding as a grey square (docs/fit.md#texts-as-images)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or table."),
    wide: bool = typer.Option(False, "--wide", "--metrics-table", help="Print every metric (default: a compact "
                              "table of the most informative ones that fits the terminal; the files hold them all)."),
) -> None:
    """Rank pretrained models for DATA without fine-tuning; write ranking.json, ranking.csv, report.html."""
    from .._io import check_output
    from ..data import load_dataset
    from ..rank import rank

    runner = "local"  # the plain local run imports no bench (a warm rerun's start-up)
    if backend != "local" or cpus_per_run is not None or gpus_per_run:
        from ..bench import backend_of

        runner = backend_of(backend, address, cpus_per_run, gpus_per_run)  # a bad option fails before any work
    metrics = alias("--metrics", "-m", metrics, metrics_m)  # -m is --model everywhere else
    if adaptive:
        _check_adaptive(confidence, ensemble, runner, layers)
    out_console = console()
    ds = load_dataset(data, "train", text_column=text_column, label_column=label_column, strict=strict)
    if as_image:  # texts as images of their embeddings, for the vision zoo (transferlab.models._as_image)
        from ..models import texts_as_images

        ds = texts_as_images(ds, cache_dir=cache_dir, use_cache=not no_cache)
    out_dir = check_output(out or Path("runs") / f"rank-{ds.name}")  # before any forward pass
    zoo = zoo or {"text": "builtin:text", "array": "builtin:pixels"}.get(ds.modality, "builtin:vision")
    if adaptive:
        from ..rank import rank_adaptive

        result = rank_adaptive(ds, zoo, metrics, confidence=confidence, image_size=image_size, limit=limit,
                               batch_size=batch_size, cache_dir=cache_dir, use_cache=not no_cache, threads=threads,
                               progress=not quiet, trust_pickle=trust_pickle, device=device, precision=precision)
    else:
        result = rank(ds, zoo, metrics, image_size=image_size, limit=limit, batch_size=batch_size,
                      cache_dir=cache_dir, use_cache=not no_cache, threads=threads, progress=not quiet,
                      trust_pickle=trust_pickle, ensemble=ensemble, backend=runner, device=device,
                      precision=precision, layers=layers)
    paths = result.save(out_dir)
    if not quiet:
        out_console.print(_table(result, None if wide else _compact_metrics(result, out_console.width)))
        out_console.print(result.recommendation(), highlight=False)
        if result.expectation():
            out_console.print(result.expectation(), highlight=False)
        for note in result.notes:
            out_console.print(f"[yellow]note:[/] {note}", highlight=False)
        if result.ensemble:
            out_console.print(f"ensemble of {len(result.ensemble['models'])}: "
                              f"{', '.join(result.ensemble['names'])}", highlight=False)
        out_console.print(result.timing_summary(), highlight=False)  # warm: says so, with the cold run's timings
    out_console.print(f"report: {paths['html'].resolve()}", highlight=False, soft_wrap=True)


def _check_adaptive(confidence: float, ensemble: int | None, runner, layers: str) -> None:  # noqa: ANN001
    """--adaptive's options, before any work: its confidence; no option it does not take."""
    from ..errors import TransferlabError
    from ..rank import adaptive_settings

    adaptive_settings(confidence)
    if ensemble or getattr(runner, "name", runner) != "local" or layers != "last":
        raise TransferlabError("--adaptive ranks in this process on each model's output features: it takes no "
                               "--ensemble, --backend ray or --layers")


def _compact_metrics(result, width: int) -> list[str]:  # noqa: ANN001
    """As many of the preferred metrics as fit ``width`` (at most three; at least one)."""
    name = max((len(m.name) + (11 if m.metadata.get("baseline") else 0) for m in result.models), default=10)
    room = width - (4 + min(name, 40) + 3 + 12)  # '#', model, borders, consensus
    k = max(1, min(3, room // 12))
    return result.preferred_metrics(k)


def _table(result, metrics=None):  # noqa: ANN001, ANN202
    from rich.table import Table

    shown = list(result.metrics) if metrics is None else list(metrics)
    hidden = len(result.metrics) - len(shown)
    t = Table(title=f"{result.dataset['name']}: {result.dataset['size']} examples, {result.dataset['num_classes']} "
                    f"classes — higher is better", title_justify="left",
              caption=f"{hidden} more metric(s): --wide, or ranking.csv" if hidden else None, caption_justify="left")
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("model", overflow="fold", max_width=40)
    t.add_column("consensus", justify="right", no_wrap=True)
    for m in shown:
        t.add_column(m.replace("_", " "), justify="right", no_wrap=True)
    for m in result.models:
        base = " [dim](baseline)[/]" if m.metadata.get("baseline") else ""
        cells = []
        for k in shown:
            v = m.scores.get(k)
            cells.append("[red]failed[/]" if k in m.failures else "[dim]n/a[/]" if v is None else (f"[bold]{v:.4g}[/]" if m.ranks.get(k) == 1 else f"{v:.4g}"))
        t.add_row(str(m.consensus_rank), m.name + base,
                  "" if m.consensus_score is None else f"{m.consensus_score:.2f}", *cells)
    return t


@metrics_app.command("list")
def metrics_list() -> None:
    """List the registered transferability metrics."""
    from rich.markup import escape
    from rich.table import Table

    from ..rank import list_metrics, metric_info

    t = Table("metric", "needs", "what it measures", "checked against")
    for m in list_metrics():
        info = metric_info(m)
        t.add_row(m, info.get("needs", ""), escape(info.get("summary", "")), escape(info.get("reference", "")))
    console().print(t)
