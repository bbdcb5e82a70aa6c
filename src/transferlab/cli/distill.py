"""``transferlab distill``: one or many teachers into a small student, with the evidence."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, print_registry
from .fit import _options


def _list() -> None:
    from ..distill import METHODS

    print_registry(METHODS, "method", "methods (--method)")


def distill_cmd(
    data: str = typer.Argument(None, help="Labelled dataset (its train split; its test split gives the evidence)."),
    teacher: list[str] = typer.Option([], "--teacher", "-t", help="A teacher: a model directory (fit, merge, "
                                      "domain, distill) or a reference whose head predicts DATA's classes. "
                                      "Repeatable."),
    student: str = typer.Option(None, "--student", "-s", help="The student: a model reference (fresh head) or a "
                                "fitted directory."),
    method: str = typer.Option("kd", "--method", help="kd, multi_avg, multi_weighted, kl_dp, feature, dkd, dist "
                               "(--list)."),
    unlabelled: str = typer.Option(None, "--unlabelled", help="More examples (their train split) that are only "
                                   "distilled: their labels, if any, are not read."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default 1e-3)."),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    image_size: int = typer.Option(None, "--image-size", min=8, help="The student's input size (teachers keep "
                                   "theirs)."),
    patience: int = typer.Option(None, "--patience", min=1, help="Stop after this many epochs without a better "
                                 "validation accuracy."),
    limit: int = typer.Option(None, "--limit", min=1, help="A class-stratified sample of DATA's train split."),
    option: list[str] = typer.Option([], "--option", help="Method option KEY=VALUE (e.g. temperature=4, "
                                     "kd_weight=0.9)."),
    zscore: bool = typer.Option(False, "--zscore", help="Logit standardisation (Sun et al., CVPR 2024) before the "
                                "softmax at T: the same as --option zscore=true (kd, multi_*, dkd, dist)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default: runs/distill-DATA-METHOD)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model transferlab wrote in --out."),
    seed: int = typer.Option(0, "--seed"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow pickle weight files (they can run code)."),
    novel_classes: str = typer.Option(None, "--novel-classes", help="Novel-class discovery: comma-separated classes "
                                      "of DATA whose labels are hidden; the model clusters them (class-relation KD "
                                      "at --option kd_weight=0.1; 0: without it). --teacher is not used."),
    list_: bool = typer.Option(False, "--list", help="List the methods and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Distil one or many teachers into a small STUDENT on DATA; report what it gained, lost and costs."""
    from typer._click.exceptions import MissingParameter

    if list_:
        _list()
        return
    for value, hint, kind in ((data, "'DATA'", "argument"), (student, "'--student' / '-s'", "option")):
        if value is None:
            raise MissingParameter(param_hint=hint, param_type=kind)
    if novel_classes is not None:
        _discover(data, novel_classes, student, epochs, lr, batch_size, image_size, limit, option, out, seed, quiet)
        return
    from ..data import load_dataset
    from ..distill import distill
    from ..errors import TransferlabError

    ds = load_dataset(data, "train")
    if limit:
        ds = ds.stratified_sample(limit, seed=seed)
    try:
        test = load_dataset(data, "test")
    except TransferlabError:
        test = None
    name = data.removeprefix("builtin:").replace("/", "-").replace(":", "-").strip("-.") or "data"
    out_dir = out or Path("runs") / f"distill-{name}-{method}"
    r = distill(ds, teacher, student, method, unlabelled=unlabelled, test=test, epochs=epochs, lr=lr,
                batch_size=batch_size, image_size=image_size, patience=patience, out=out_dir, overwrite=overwrite,
                seed=seed, progress=not quiet, trust_pickle=trust_pickle,
                **{**_options(option), **({"zscore": True} if zscore else {})})
    m = r.metrics
    c = console()
    if m.get("test_accuracy") is not None:
        line = f"{method}: student test accuracy {m['test_accuracy']:.4f}"
        if m.get("transfer_delta") is not None:
            line += (f" (start {m['start_test_accuracy']:.4f}, delta {100 * m['transfer_delta']:+.1f} points; gain "
                     f"{100 * m['knowledge_gain']:.1f} %, loss {100 * m['knowledge_loss']:.1f} %)")
        line += "; teachers " + ", ".join(f"{a:.4f}" for a in m["teacher_test_accuracy"])
        sp = [s for s in m.get("speedup") or [] if s]
        if sp:
            line += f"; {min(sp):.1f}x faster per image than the fastest teacher"
        c.print(line, highlight=False)
    c.print(f"model: {out_dir.resolve()}", highlight=False, soft_wrap=True)


def _discover(data: str, novel: str, student: str, epochs: int, lr: float | None, batch_size: int,
              image_size: int | None, limit: int | None, option: list[str], out: Path | None, seed: int,
              quiet: bool) -> None:
    from .._registry import check_options
    from ..distill import discover
    from ..errors import TransferlabError

    opts = _options(option)  # only discovery's own options: the rest are this command's (a second value: TypeError)
    other = [k for k in opts if k not in ("kd_weight", "kd_temperature", "epsilon", "known_epochs")]
    if other:
        raise TransferlabError(f"--novel-classes takes --option kd_weight, kd_temperature, epsilon or known_epochs; "
                               f"got {', '.join(other)}")
    opts = check_options("novel-class discovery", discover, opts, skip=3)
    name = data.removeprefix("builtin:").replace("/", "-").replace(":", "-").strip("-.") or "data"
    out_dir = out or Path("runs") / f"discover-{name}"
    m = discover(data, [c.strip() for c in novel.split(",") if c.strip()], student, epochs=epochs,
                 known_epochs=int(opts.pop("known_epochs", epochs)), lr=lr or 1e-3, batch_size=batch_size,
                 image_size=image_size, limit=limit, seed=seed, out=out_dir, progress=not quiet, **opts).metrics
    line = f"novel classes {', '.join(m['novel_classes'])}: kd_weight {m['kd_weight']:g}"
    if m.get("novel_cluster_accuracy") is not None:
        line += (f"; clustering accuracy {m['novel_cluster_accuracy']:.4f} on {m['n_test_novel']} test examples, "
                 f"known-class accuracy {m['known_accuracy']:.4f}")
    console().print(line, highlight=False)
    console().print(f"metrics: {(out_dir / 'metrics.json').resolve()}", highlight=False, soft_wrap=True)
