"""``transferlab zoo list``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Model zoos.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    zoo: str = typer.Argument(None, help="A zoo (builtin:vision, builtin:text, a YAML file). Without it: list the "
                              "built-in zoos and models."),
) -> None:
    """Show the models of a zoo, or the built-in zoos and models."""
    from rich.console import Console
    from rich.table import Table

    from ..zoo import BUILTIN_MODELS, list_builtin_zoos, load_zoo, resolve_model

    c = Console()
    if zoo is None:
        c.print("built-in zoos: " + ", ".join(list_builtin_zoos()))
        t = Table("model", "modality", "what it is")
        for name in BUILTIN_MODELS.list():
            meta = BUILTIN_MODELS.meta(name)
            t.add_row(f"builtin:{name}", meta.get("modality", ""), meta.get("summary", ""))
        c.print(t)
        return
    z = load_zoo(zoo)
    t = Table("name", "reference", "params", "source data", "source acc. %", title=f"zoo {z.name}: {z.description}",
              title_justify="left")
    for m in z.models:
        meta = {**resolve_model(m.ref).metadata(), **{k: v for k, v in m.model_dump().items() if v is not None}}
        params = meta.get("params")
        t.add_row(m.display_name, m.ref, f"{params / 1e6:.2f} M" if params else "-", str(meta.get("source_dataset", "-")),
                  str(meta.get("source_accuracy", "-")))
    c.print(t)
