"""``transferlab auto``: from a dataset to an adapted, evaluated, reported model in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console


def auto_cmd(
    data: str = typer.Argument(..., help="Dataset: builtin:NAME, a folder, .csv, .jsonl, .npz or a manifest."),
    zoo: str = typer.Option(None, "--zoo", "-z", help="Zoo to choose from (default: builtin:vision for images, "
                            "builtin:text for texts), a YAML file or comma-separated references."),
    budget: str = typer.Option("15m", "--budget", "-b", help="Wall-time budget: 15m, 90s, 1h, 1h30m."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default: runs/auto-DATA)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Calibrate, print the plan and its estimated time per "
                                 "stage, and stop (nothing is trained or written)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --out (the old one stays "
                                   "until the new one is complete)."),
    seed: int = typer.Option(0, "--seed"),
    image_size: int = typer.Option(None, "--image-size", min=8, help="Input size of every stage (default: each "
                                   "model's, 128 px for small images)."),
    limit: int = typer.Option(None, "--limit", min=2, help="Class-stratified sample of the training split (a quick "
                              "look; the test split is kept whole)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Check the data, rank the zoo, adapt the best candidates within the budget, evaluate and report."""
    from rich.table import Table

    from ..auto import auto, fmt_seconds, measured_text

    c = console()

    def say(line: str) -> None:
        if not quiet:
            c.print(line, highlight=False, soft_wrap=True, markup=False)

    name = data.removeprefix("builtin:").replace("/", "-").replace(":", "-").strip("-.") or "data"
    out_dir = out or Path("runs") / f"auto-{name}"
    r = auto(data, zoo, budget=budget, out=None if dry_run else out_dir, dry_run=dry_run, overwrite=overwrite,
             seed=seed, image_size=image_size, limit=limit, progress=not quiet, say=say)
    t = Table(title=f"plan ({fmt_seconds(r.plan.estimate)} of a {fmt_seconds(r.plan.budget)} budget)",
              title_justify="left")
    for col in ("stage", "estimate", "measured", "what"):
        t.add_column(col, overflow="fold")
    for s in r.plan.stages:
        t.add_row(s.name, fmt_seconds(s.estimate), measured_text(s), s.what)
    c.print(t)
    c.print(f"method: {r.plan.method}: {r.plan.method_why}", highlight=False, soft_wrap=True, markup=False)
    for n in r.plan.notes:
        c.print(n, highlight=False, soft_wrap=True, markup=False)
    if dry_run:
        return
    m = r.metrics
    def acc(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    c.print(f"kept {m['model']} ({m['method']}, stage {m['chosen']}): validation accuracy {acc(m['val_accuracy'])}, "
            f"test accuracy {acc(m.get('test_accuracy'))}"
            + f"; {fmt_seconds(m['wall_seconds'])} of {fmt_seconds(r.plan.budget)}", highlight=False, markup=False)
    c.print(f"model directory: {r.out.resolve()} (transferlab predict / eval take it); report: "
            f"{(r.out / 'report.html').resolve()}", highlight=False, soft_wrap=True, markup=False)
