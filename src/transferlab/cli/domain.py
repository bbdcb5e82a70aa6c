"""``transferlab domain``: adapt a model to a shifted, unlabelled target from a labelled source."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, print_registry
from .fit import _options


def _list() -> None:
    from ..domain import METHODS, SELECTORS

    print_registry(METHODS, "method", "methods (--method)")
    print_registry(SELECTORS, "selector", "label-free selectors (--select)", ("paper",))


def domain_cmd(
    source: str = typer.Argument(None, help="Labelled source dataset (its train split)."),
    target: str = typer.Argument(None, help="Target dataset from the shifted domain (its train split, labels "
                                 "unused; a labelled test split only fills the oracle column)."),
    model: str = typer.Option(None, "--model", "-m", help="Image model reference, e.g. builtin:efficientnet_lite0."),
    source_model: Path = typer.Option(None, "--source-model", help="Source-free: a saved source model (a fit or "
                                      "domain output) adapted on TARGET alone (then give only TARGET, no --model; "
                                      "--method shot, nrc or aad)."),
    method: str = typer.Option(None, "--method", help="source_only, dann, cdan, cdan_e, mcc; source-free: shot, "
                               "nrc, aad (--list). Default dann, or shot with --source-model."),
    trade_off: float = typer.Option(1.0, "--trade-off", help="Weight of the transfer loss (> 0)."),
    select: str = typer.Option("guarded", "--select", help="Label-free checkpoint selector (--list); guarded: "
                               "the best transfer score among epochs that keep the source accuracy and do not "
                               "collapse, else the source (-only) checkpoint."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    lr: float = typer.Option(None, "--lr", help="Learning rate of the head and discriminator (default 1e-2, source-free 1e-3; backbone: 0.1x)."),
    batch_size: int = typer.Option(32, "--batch-size", min=2, help="Examples per domain per step."),
    image_size: int = typer.Option(None, "--image-size", min=8),
    limit: int = typer.Option(None, "--limit", min=1, help="Use this many examples of each domain's training split "
                              "(source: class-stratified; target: a random sample, its labels unread)."),
    label_smoothing: float = typer.Option(None, "--label-smoothing", min=0.0, max=0.999, help="Of the source "
                                          "cross-entropy (default 0.1 for source_only, SHOT's source recipe; 0 "
                                          "for the adaptation methods)."),
    sam: float = typer.Option(None, "--sam", help="SDAT: sharpness-aware minimisation of the task loss with radius "
                              "RHO (the paper: 0.02) for dann, cdan, cdan_e; the discriminator steps plainly."),
    weighting: str = typer.Option("fixed", "--weighting", help="fixed (cross-entropy + trade-off x transfer loss) "
                                  "or pareto (ParetoDA: a Pareto-optimal direction of the source, transfer and "
                                  "target objectives' gradients per step)."),
    option: list[str] = typer.Option([], "--option", help="Method option KEY=VALUE (e.g. temperature=2.5)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default: runs/domain-SOURCE-TARGET-METHOD)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model transferlab wrote in --out."),
    seed: int = typer.Option(0, "--seed"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow pickle weight files (they can run code)."),
    list_: bool = typer.Option(False, "--list", help="List the methods and selectors and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Adapt a model to an unlabelled TARGET with a labelled SOURCE; keep the checkpoint a label-free score picks."""
    from typer._click.exceptions import MissingParameter

    if list_:
        _list()
        return
    if source_model is not None:  # domain --source-model M TARGET: the one argument is the target
        if target is not None:
            raise typer.BadParameter("with --source-model give only TARGET (no source dataset)", param_hint="SOURCE")
        source, target = None, source
    method = method or ("shot" if source_model is not None else "dann")
    needed = ((target, "'TARGET'", "argument"),) if source_model is not None else (
        (source, "'SOURCE'", "argument"), (target, "'TARGET'", "argument"), (model, "'--model' / '-m'", "option"))
    for value, hint, kind in needed:
        if value is None:
            raise MissingParameter(param_hint=hint, param_type=kind)
    from ..data import load_dataset
    from ..domain import adapt

    src_ds = load_dataset(source, "train") if source is not None else None
    tgt_ds = load_dataset(target, "train")
    if limit:
        import numpy as np

        if src_ds is not None:
            src_ds = src_ds.stratified_sample(limit, seed=seed)
        if limit < len(tgt_ds):  # not stratified: that would read the target's labels
            tgt_ds = tgt_ds.subset(np.sort(np.random.default_rng(seed).choice(len(tgt_ds), limit, replace=False)))
    from ..errors import TransferlabError

    try:
        target_test = load_dataset(target, "test")
    except TransferlabError:  # no labelled test split: no oracle column
        target_test = None
    name = lambda ref: ref.removeprefix("builtin:").replace("/", "-").replace(":", "-")  # noqa: E731
    origin = name(source) if source is not None else Path(source_model).name
    out_dir = out or Path("runs") / f"domain-{origin}-{name(target)}-{method}"
    r = adapt(src_ds, tgt_ds, model, method, source_model=source_model, trade_off=trade_off, select=select, epochs=epochs, lr=lr,
              label_smoothing=label_smoothing, sam=sam, weighting=weighting, batch_size=batch_size, image_size=image_size, target_test=target_test, out=out_dir,
              overwrite=overwrite, seed=seed, progress=not quiet, trust_pickle=trust_pickle, **_options(option))
    m = r.metrics
    c = console()
    oracle = m.get("target_accuracy_oracle")
    src_acc = m.get("source_val_accuracy")
    c.print(f"{method} {source or source_model} -> {target}: kept epoch {m['selected_epoch']} by {select} (no "
            "target labels)"
            + (f"; target accuracy {oracle:.4f} (oracle: labels used only to report it)" if oracle is not None else "")
            + (f"; source hold-out accuracy {src_acc:.4f}" if src_acc is not None else "; source-free"),
            highlight=False)
    if m.get("guarded_fallback"):
        c.print(f"guarded: no epoch passed the guard; fell back to {m['guarded_fallback']['to']}", highlight=False)
    c.print(f"model: {out_dir.resolve()}", highlight=False, soft_wrap=True)
