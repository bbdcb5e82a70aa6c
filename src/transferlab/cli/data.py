"""``transferlab data info``."""

from __future__ import annotations

import json

import typer

from ._console import console

app = typer.Typer(help="Datasets.", no_args_is_help=True)


@app.command("info")
def info(
    ref: str = typer.Argument(..., help="Dataset: builtin:NAME, an image folder, a .csv/.jsonl/.npz file."),
    split: str = typer.Option("train", "--split", help="train or test."),
    text_column: str = typer.Option("text", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
    strict: bool = typer.Option(False, "--strict", help="Fail on unreadable images instead of skipping them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print size, classes, class balance and content fingerprint of a dataset split."""
    from rich.table import Table

    from ..data import load_dataset

    d = load_dataset(ref, split, text_column=text_column, label_column=label_column, strict=strict).info()
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    c = console()
    c.print(f"[bold]{d['name']}[/] ({d['split']} split, {d['modality']}): {d['size']} examples, "
            f"{d['num_classes']} classes, imbalance max/min {d['imbalance_ratio']:.2f}", highlight=False)
    c.print(f"fingerprint {d['fingerprint']}", highlight=False)
    if d.get("skipped"):
        c.print(f"[yellow]skipped {d['skipped']} unreadable file(s)[/]")
    t = Table("class", "examples", "share")
    for name, n in d["class_counts"].items():
        t.add_row(name, str(n), f"{n / d['size']:.1%}")
    c.print(t)
