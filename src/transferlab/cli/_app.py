"""Root typer app: logging, error handling, sub-command registration."""

from __future__ import annotations

import logging
import os
import sys

import typer

from .._version import __version__
from ._console import console

app = typer.Typer(
    name="transferlab",
    help="Practical transfer learning: rank pretrained models for your data, with measured evidence.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"transferlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print the version."),
) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=console(stderr=True), show_path=False, markup=False)  # warnings: stderr, not stdout
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


def _register() -> None:
    from . import auto as _auto
    from . import bench as _bench
    from . import bench_adaptive as _bench_adaptive
    from . import bench_scaling as _bench_scaling
    from . import continual as _continual
    from . import data as _data
    from . import distill as _distill
    from . import domain as _domain
    from . import fit as _fit
    from . import merge as _merge
    from . import prune as _prune
    from . import rank as _rank
    from . import zoo as _zoo
    from ._runtime import config_option, runtime_options

    app.command("rank")(runtime_options(_rank.rank_cmd))
    app.command("fit")(runtime_options(_fit.fit_cmd, devices=True))
    app.command("predict")(runtime_options(_fit.predict_cmd))
    app.command("eval")(runtime_options(_fit.eval_cmd))
    app.command("merge")(runtime_options(_merge.merge_cmd))
    app.command("domain")(runtime_options(_domain.domain_cmd, devices=True))
    app.command("distill")(runtime_options(_distill.distill_cmd, devices=True))
    app.command("continual")(runtime_options(_continual.continual_cmd, devices=True))
    app.command("prune")(runtime_options(_prune.prune_cmd))
    app.command("auto")(runtime_options(_auto.auto_cmd))
    app.add_typer(_data.app, name="data")
    app.add_typer(_zoo.app, name="zoo")
    app.add_typer(_rank.metrics_app, name="metrics")
    _bench.app.command("rank-adaptive")(_bench_adaptive.bench_rank_adaptive_cmd)
    _bench.app.command("scaling")(_bench_scaling.bench_scaling_cmd)
    for sub in (*_bench.app.registered_commands, *_data.app.registered_commands):  # --config, their options only
        sub.callback = config_option(sub.callback)
    app.add_typer(_bench.app, name="bench")


_register()


#: the one line printed on Ctrl-C (exit status 130, the shell's convention for SIGINT), by command
INTERRUPTED = "interrupted; rerun to resume from the cache"
_INTERRUPTED = {"fit": "interrupted; rerun the same command to resume from the last epoch's checkpoint",
                "merge": "interrupted; nothing was written", "predict": "interrupted; nothing was written",
                "domain": "interrupted; rerun the same command to resume from the last epoch's checkpoint",
                "distill": "interrupted; rerun the same command to resume from the last epoch's checkpoint",
                "continual": "interrupted; nothing was written (a rerun starts the stream over)",
                "auto": "interrupted; rerun the same command to resume at the stage where it stopped"}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status.

    0: done. 2: a usage error (one line plus the usage) or a :class:`TransferlabError` (one line). 130: interrupted
    (Ctrl-C); outputs are written atomically, so nothing half-written is left. Never a traceback for any of these.
    """
    from typer._click import exceptions as click_exc
    from typer.main import get_command

    from ..errors import TransferlabError

    args = list(sys.argv[1:] if argv is None else argv)
    if "merge" in args[:3] or ("bench" in args[:3] and "merge" in args[:4]):
        from .merge import expand_multi

        args = expand_multi(args)
    command = get_command(app)
    complete = getattr(command, "_main_shell_completion", None)  # typer's completion: exits when the shell asks
    if complete is not None:
        complete({}, "transferlab", None)
    try:
        # make_context + invoke (not app()): click's own main would turn Ctrl-C into a return value and drop it
        with command.make_context("transferlab", args) as ctx:
            command.invoke(ctx)
    except TransferlabError as exc:
        console(stderr=True).print(f"[bold red]error:[/] {_one_line(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except click_exc.NoArgsIsHelpError as exc:  # `transferlab` or `transferlab zoo` alone: help, usage status
        text = exc.ctx.get_help() if exc.ctx is not None else str(exc)  # rich help prints itself, returns ""
        if text:
            typer.echo(text)
        return 2
    except click_exc.ClickException as exc:  # usage errors: unknown option, bad type, missing argument, ...
        exc.show()
        return 2 if isinstance(exc, click_exc.UsageError) else exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except OSError as exc:
        import errno

        if exc.errno == errno.EPIPE:  # `transferlab ... | head`: the reader left; nothing to say
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (no flush error at exit)
            return 1
        from .._io import output_error

        err = output_error(exc, exc.filename or "the output")
        if err is exc:  # not a disk or permission problem: a bug, show it
            raise
        console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    except (KeyboardInterrupt, typer.Abort):
        command_name = next((a for a in args if not a.startswith("-")), "")
        console(stderr=True).print(f"\n{_INTERRUPTED.get(command_name, INTERRUPTED)}", highlight=False)
        return 130
    return 0


def _one_line(message: str, limit: int = 2000) -> str:
    """Errors stay readable: at most ``limit`` characters (the start and a count of what was cut)."""
    return message if len(message) <= limit else f"{message[:limit]} ... ({len(message) - limit} more characters)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
