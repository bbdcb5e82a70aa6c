"""``transferlab bench rank``: every metric's ranking quality against real fine-tuning."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console

app = typer.Typer(help="Ground truth for the claims: measure methods on your own data.", no_args_is_help=True)


@app.command("rank")
def bench_rank_cmd(
    zoo: str = typer.Option("builtin:vision", "--zoo", "-z", help="Zoo reference or YAML file."),
    targets: str = typer.Option(..., "--targets", "-t", help="Comma-separated target datasets."),
    protocol: str = typer.Option("linear_probe", "--protocol", help="fit method for the ground truth "
                                 "(linear_probe, finetune, lora, ...)."),
    backend: str = typer.Option("local", "--backend", help="local or ray."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (default: a local Ray)."),
    metrics: str = typer.Option(None, "--metrics", "-m", help="Comma-separated metrics (default: the default set)."),
    limit: int = typer.Option(None, "--limit", help="Class-stratified sample of each train split."),
    image_size: int = typer.Option(None, "--image-size", help="Input size for image models (default: fit's)."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Epochs per ground-truth fit (not linear_probe)."),
    ensemble: int = typer.Option(None, "--ensemble", min=1, help="Also choose and validate a K-model ensemble."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/bench-rank"), "--out", "-o", help="Output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Score every model with every metric, fit every (model, target) for ground truth, report weighted tau."""
    from rich.table import Table

    from ..bench import bench_rank

    r = bench_rank(zoo, targets, protocol=protocol, backend=backend, metrics=metrics, limit=limit,
                   image_size=image_size, epochs=epochs, seed=seed, ray_address=ray_address, progress=not quiet,
                   ensemble=ensemble)
    paths = r.save(out)
    c = console()
    t = Table("score", *[x.removeprefix("builtin:") for x in r.targets], "mean τw", title="weighted Kendall tau")
    for kind, name, vals, mean in r.table():
        label = name + (" (baseline)" if kind == "baseline" else "")
        t.add_row(label, *("n/a" if v is None else f"{v:.3f}" for v in vals), "n/a" if mean is None else f"{mean:.3f}")
    c.print(t)
    for target, e in (r.ensemble or {}).items():
        c.print(f"{target}: ensemble of {e['k']} {e['chosen_accuracy']:.4f} (top-{e['k']} by consensus "
                f"{e['top_k_consensus_accuracy']:.4f}, best single {e['best_single_accuracy']:.4f}, random sets "
                f"{e['random_mean_accuracy']:.4f} mean)", highlight=False)
    ratio = r.cost["ground_truth_over_ranking"]
    c.print(f"ranking {r.cost['ranking_seconds']:.1f} s, ground truth {r.cost['ground_truth_seconds']:.1f} s"
            + (f" ({ratio:.1f}x)" if ratio else ""), highlight=False)
    c.print(f"bench.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)
