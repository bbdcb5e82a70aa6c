"""``transferlab continual``: one model on a stream of tasks, with what it forgets and what it gains."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, print_registry
from .fit import _options


def _list() -> None:
    from ..continual import STRATEGIES

    print_registry(STRATEGIES, "strategy", "strategies (--strategy)")


def continual_cmd(
    stream: str = typer.Option(None, "--stream", help="Task-incremental: comma-separated datasets (a head each), or a "
                               "stream YAML."),
    split: str = typer.Option(None, "--split", help="Class-incremental: DATA:K, K equal groups of DATA's classes "
                              "(one growing head)."),
    model: str = typer.Option(None, "--model", "-m", help="Model reference, e.g. builtin:small_resnet_shapes."),
    strategy: str = typer.Option("naive", "--strategy", help="naive, joint, replay, ewc, lwf, supsup, exssnet, "
                                  "prototype, ranpac, ease, gpm, cuber (--list: what each does)."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Epochs per task."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default 1e-3)."),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    image_size: int = typer.Option(None, "--image-size", min=8),
    limit: int = typer.Option(None, "--limit", min=1, help="Class-stratified sample of each task's train split."),
    test_limit: int = typer.Option(None, "--test-limit", min=1, help="... and of its test split."),
    option: list[str] = typer.Option([], "--option", help="Strategy option KEY=VALUE (e.g. buffer_size=500)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default: runs/continual-STRATEGY)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model transferlab wrote in --out."),
    seed: int = typer.Option(0, "--seed"),
    list_: bool = typer.Option(False, "--list", help="List the strategies and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Adapt one model to a stream of tasks; report the accuracy matrix, ACC, BWT and FWT."""
    from typer._click.exceptions import MissingParameter

    if list_:
        _list()
        return
    if model is None:
        raise MissingParameter(param_hint="'--model' / '-m'", param_type="option")
    from ..continual import run

    out_dir = out or Path("runs") / f"continual-{strategy}"
    r = run(stream, model, strategy, split=split, epochs=epochs, lr=lr, batch_size=batch_size, image_size=image_size,
            limit=limit, test_limit=test_limit, out=out_dir, overwrite=overwrite, seed=seed, progress=not quiet,
            **_options(option))
    m = r.metrics
    c = console()
    c.print(f"{strategy} on {m['stream']}: ACC {m['acc']:.4f}"
            + (f", BWT {m['bwt']:+.4f}" if m.get("bwt") is not None else "")
            + (f", FWT {m['fwt']:+.4f}" if m.get("fwt") is not None else ""), highlight=False)
    for name, row in zip(m["tasks"] if len(m["accuracy_matrix"]) > 1 else ["every task"], m["accuracy_matrix"],
                         strict=True):
        c.print(f"  after {name}: " + "  ".join(f"{a:.3f}" for a in row), highlight=False)
    c.print(f"model: {out_dir.resolve()}", highlight=False, soft_wrap=True)
