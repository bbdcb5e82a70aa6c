"""``transferlab prune``: keep the source classes a target needs."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, print_registry


def prune_cmd(
    source: str = typer.Argument(None, help="Source dataset whose classes are pruned (its train split)."),
    target: str = typer.Option(None, "--target", help="Target dataset (its train split; labels unread)."),
    surrogate: str = typer.Option(None, "--surrogate", help="A classifier for the source's classes: a model "
                                  "directory fitted on SOURCE, or a reference whose head predicts them."),
    method: str = typer.Option("label_map", "--method", help="label_map, feature_map or random (--list)."),
    keep: float = typer.Option(0.5, "--keep", help="Share of the source classes kept, in (0, 1]."),
    limit: int = typer.Option(None, "--limit", min=1, help="Class-stratified sample of each split for the scores."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder for the manifest (default: runs/prune-SOURCE-"
                             "METHOD)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    seed: int = typer.Option(0, "--seed"),
    list_: bool = typer.Option(False, "--list", help="List the methods and exit."),
) -> None:
    """Score every SOURCE class for a target and keep the best share, as a dataset other commands read."""
    from typer._click.exceptions import MissingParameter

    from ..prune import METHODS, prune

    if list_:
        print_registry(METHODS, "method", "methods (--method)")
        return
    for value, hint, kind in ((source, "'SOURCE'", "argument"), (target, "'--target'", "option")):
        if value is None:
            raise MissingParameter(param_hint=hint, param_type=kind)
    name = source.removeprefix("builtin:").replace("/", "-").replace(":", "-").strip("-.") or "source"
    out_dir = out or Path("runs") / f"prune-{name}-{method}"
    r = prune(source, target, surrogate, method, keep=keep, out=out_dir, overwrite=overwrite, seed=seed, limit=limit)
    c = console()
    c.print(f"{method}: kept {len(r.kept)} of {r.info['n_source_classes']} classes "
            f"({100 * r.info['kept_share_of_examples']:.0f} % of the examples): {', '.join(r.kept)}", highlight=False)
    c.print(f"dataset: {out_dir.resolve()} (load_dataset reads it; transferlab fit/rank take it as DATA)",
            highlight=False, soft_wrap=True)
    c.print(f"report: {(out_dir / 'report.html').resolve()}", highlight=False, soft_wrap=True)
