"""``transferlab zoo list`` and ``transferlab zoo build``."""

from __future__ import annotations

import typer

from ._console import console
from ._runtime import runtime_options

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
@runtime_options
def build_cmd(
    out: str = typer.Option(None, "--out", "-o", help="Directory for the weights and manifest (default: the "
                            "package's zoo/_weights, where builtin:small_* load from)."),
    models: str = typer.Option(None, "--models", help="Comma-separated subset (default: all nine)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Override each model's epochs (quick checks)."),
    limit: int = typer.Option(None, "--limit", min=10, help="Stratified sample of each source task (quick checks)."),
    source: str = typer.Option(None, "--source", help="Pretrain one small architecture (--arch) from scratch on this "
                               "image dataset instead (a pruned source from `transferlab prune` included) into the "
                               "model directory --out; `fit TARGET -m builtin:small_ARCH_shapes --init OUT` "
                               "fine-tunes it."),
    arch: str = typer.Option("resnet", "--arch", help="With --source: resnet, convnext or vit (the small zoo's)."),
    seed: int = typer.Option(0, "--seed", help="With --source: the seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="With --source: replace an earlier model in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Pretrain the small built-in zoo deterministically (seed 0, one thread) on its offline source tasks, or (with
    --source) one small architecture on any image dataset."""
    from pathlib import Path

    from .._io import check_output
    from ..pretrain import build_zoo

    if source is not None:
        _build_on_source(source, arch, out, models, epochs, limit, seed, overwrite, quiet)
        return
    if out:
        check_output(out)  # before any training
    c = console()

    def done(name: str, row: dict) -> None:
        c.print(f"{name}: {row['arch']} on {row['source']}, source test accuracy {row['source_accuracy']:.2f} %, "
                f"{row['train_seconds']:.0f} s, sha256 {row['sha256'][:12]}", highlight=False)

    build_zoo(Path(out) if out else None, [m.strip() for m in models.split(",")] if models else None,
              epochs=epochs, limit=limit, progress=not quiet, on_done=done)


def _build_on_source(source: str, arch: str, out: str | None, models: str | None, epochs: int | None,
                     limit: int | None, seed: int, overwrite: bool, quiet: bool) -> None:
    from ..errors import TransferlabError
    from ..pretrain import pretrain

    if out is None:
        raise TransferlabError("--source needs --out: the model directory to write")
    if models:
        raise TransferlabError("--models names models of the built-in zoo; with --source give --arch")
    r = pretrain(source, arch, out, epochs=epochs or 10, limit=limit, seed=seed, overwrite=overwrite,
                 progress=not quiet)
    console().print(f"{arch} pretrained on {r.metrics['source']} ({r.metrics['num_classes']} classes, "
                    f"{r.metrics['n_train']} examples): source test accuracy {r.source_accuracy:.2f} %, "
                    f"{r.train_seconds:.0f} s -> {out}", highlight=False)
