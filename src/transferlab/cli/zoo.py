"""``transferlab zoo list`` and ``transferlab zoo build``."""

from __future__ import annotations

import typer

from ._console import console

app = typer.Typer(help="Model zoos.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    zoo: str = typer.Argument(None, help="A zoo (builtin:vision, builtin:text, a YAML file). Without it: list the "
                              "built-in zoos and models."),
) -> None:
    """Show the models of a zoo, or the built-in zoos and models."""
    from rich.table import Table

    from ..zoo import BUILTIN_MODELS, list_builtin_zoos, load_zoo, resolve_model

    c = console()
    if zoo is None:
        c.print("built-in zoos: " + ", ".join(list_builtin_zoos()))
        t = Table("model", "modality", "what it is")
        t.columns[0].overflow = "fold"
        for name in BUILTIN_MODELS.list():
            meta = BUILTIN_MODELS.meta(name)
            t.add_row(f"builtin:{name}", meta.get("modality", ""), meta.get("summary", ""))
        c.print(t)
        return
    z = load_zoo(zoo)
    t = Table(title=f"zoo {z.name}: {z.description}", title_justify="left")
    for col in ("name", "reference", "params", "source data", "source acc. %"):
        t.add_column(col, overflow="fold")
    for m in z.models:
        meta = {**resolve_model(m.ref).metadata(), **{k: v for k, v in m.model_dump().items() if v is not None}}
        params = meta.get("params")
        t.add_row(m.display_name, m.ref, f"{params / 1e6:.2f} M" if params else "-", str(meta.get("source_dataset", "-")),
                  str(meta.get("source_accuracy", "-")))
    c.print(t)


@app.command("build")
def build_cmd(
    out: str = typer.Option(None, "--out", "-o", help="Directory for the weights and manifest (default: the "
                            "package's zoo/_weights, where builtin:small_* load from)."),
    models: str = typer.Option(None, "--models", help="Comma-separated subset (default: all nine)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Override each model's epochs (quick checks)."),
    limit: int = typer.Option(None, "--limit", min=10, help="Stratified sample of each source task (quick checks)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Pretrain the small built-in zoo deterministically (seed 0, one thread) on its offline source tasks."""
    from pathlib import Path

    from .._io import check_output
    from ..pretrain import build_zoo

    if out:
        check_output(out)  # before any training
    c = console()

    def done(name: str, row: dict) -> None:
        c.print(f"{name}: {row['arch']} on {row['source']}, source test accuracy {row['source_accuracy']:.2f} %, "
                f"{row['train_seconds']:.0f} s, sha256 {row['sha256'][:12]}", highlight=False)

    build_zoo(Path(out) if out else None, [m.strip() for m in models.split(",")] if models else None,
              epochs=epochs, limit=limit, progress=not quiet, on_done=done)
