"""Root typer app: logging, error handling, sub-command registration."""

from __future__ import annotations

import logging
import sys

import typer

from .._version import __version__
from ._console import console

app = typer.Typer(
    name="transferlab",
    help="Practical transfer learning: rank pretrained models for your data, with measured evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"transferlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False, markup=False)],
                        force=True)


def _register() -> None:
    from . import bench as _bench
    from . import data as _data
    from . import fit as _fit
    from . import merge as _merge
    from . import rank as _rank
    from . import zoo as _zoo

    app.command("rank")(_rank.rank_cmd)
    app.command("fit")(_fit.fit_cmd)
    app.command("predict")(_fit.predict_cmd)
    app.command("eval")(_fit.eval_cmd)
    app.command("merge")(_merge.merge_cmd)
    app.add_typer(_data.app, name="data")
    app.add_typer(_zoo.app, name="zoo")
    app.add_typer(_rank.metrics_app, name="metrics")
    app.add_typer(_bench.app, name="bench")


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app; a :class:`TransferlabError` prints one line and exits with status 2."""
    from ..errors import TransferlabError

    args = list(sys.argv[1:] if argv is None else argv)
    if "merge" in args[:3] or ("bench" in args[:3] and "merge" in args[:4]):
        from .merge import expand_multi

        args = expand_multi(args)
    try:
        app(args=args, standalone_mode=False)
    except TransferlabError as exc:
        console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
