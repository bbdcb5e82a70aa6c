"""``transferlab merge``: one network from several fine-tuned models, one head per task."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, print_registry

#: options that take several values in a row (``--models A B C``), rewritten to click's repeated form
MULTI = ("--models", "--data", "--names")


def expand_multi(argv: list[str]) -> list[str]:
    """``--models A B --out X`` -> ``--models A --models B --out X`` (click options take one value each)."""
    out: list[str] = []
    current: str | None = None
    for tok in argv:
        if tok in MULTI:
            current = tok
            continue
        if current is not None and not tok.startswith("-"):
            out += [current, tok]
            continue
        if current is not None and tok.startswith("-"):
            current = None
        out.append(tok)
    return out


def merge_cmd(
    config: Path = typer.Option(None, "--config", "--recipe", "-c", help="A merge recipe (YAML: method, base, "
                                "models, options, out), e.g. OUT/merge.yaml of an earlier merge, or a mergekit "
                                "configuration (merge_method, base_model, models[].model; translated, with a note per "
                                "mapping); flags given with it override its values."),
    method: str = typer.Option(None, "--method", help="Merge method (transferlab merge --list)."),
    base: str = typer.Option(None, "--base", help="The model the fine-tuned models started from: a reference "
                             "(builtin:efficientnet_lite0, timm:..., hf:...), a fit directory, a Hugging Face folder "
                             "or a .safetensors file."),
    models: list[str] = typer.Option(None, "--models", help="Fine-tuned models: fit directories (full or LoRA), "
                                     "Hugging Face folders, .safetensors files; --models A B C."),
    data: list[str] = typer.Option(None, "--data", help="One dataset per model, same order: fisher/regmean/atlas "
                                   "merge on it; with any method, each merged head is checked against its own fit "
                                   "on that dataset's test split (merge.json, report.html, a warning when far below)."),
    names: list[str] = typer.Option(None, "--names", help="Task (head) names, one per model (default: dir names)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (refused if it exists, unless --overwrite)."),
    option: list[str] = typer.Option([], "--option", help="Method option KEY=VALUE (e.g. density=0.1), repeatable."),
    head_prefix: str = typer.Option(None, "--head-prefix", help="Name of the task head for raw checkpoints "
                                    "(fit directories record it)."),
    reset_norms: bool = typer.Option(False, "--reset-norms", help="Re-estimate batch-norm statistics of the merged "
                                     "network on --data (default: average the models' statistics)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow pickle checkpoints (can run code)."),
    list_: bool = typer.Option(False, "--list", help="List the merge methods and exit."),
    check: bool = typer.Option(False, "--check", help="Only check that the models can be merged (same base, "
                               "tokenizers, task-vector sizes, cosines, sign conflicts) and exit; every merge "
                               "prints the short form."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Merge fine-tuned models of one architecture into one network that keeps every task's head."""
    from ..merge import MERGE_METHODS, resolve_recipe, run_recipe
    from .fit import _options

    if list_:
        print_registry(MERGE_METHODS, "method", "methods (--method)", (("needs_data", "data"), "summary", "paper"))
        return
    recipe = resolve_recipe(config, method=method, base=base, models=list(models or []), names=names, data=data,
                            out=out, options=_options(option), head_prefix=head_prefix, reset_norms=reset_norms)
    c = console()
    if check:
        _print_check(recipe, trust_pickle, quiet)
        return
    for line in recipe.notes:  # a mergekit file: what each of its keys became
        c.print(f"mergekit {line}", highlight=False, soft_wrap=True)
    r = run_recipe(recipe, overwrite=overwrite, trust_pickle=trust_pickle, progress=not quiet)
    heads = f"; heads: {', '.join(r.heads)}" if r.heads else ""
    c.print(f"{r.method}: {len(r.tasks)} models merged in {r.seconds:.1f} s (peak memory {r.peak_rss_mb:.0f} MB)"
            f"{heads}", highlight=False)
    hint = f"  (transferlab predict {r.out_dir} DATA --head NAME)" if r.heads else ""
    c.print(f"model: {Path(r.out_dir or '.').resolve()}{hint}", highlight=False, soft_wrap=True)
    if r.mergeability is not None:
        c.print(r.mergeability.short(), highlight=False, soft_wrap=True)
        for w in r.mergeability.warnings:
            c.print(f"[bold yellow]warning[/]: {w}", soft_wrap=True)
    for row in r.checks:  # the check on data: each head beside its own fit
        fit = "no fit to compare" if row["fit"] is None else f"its fit {row['fit']:.3f}"
        c.print(f"  {row['task']}: merged head {row['merged']:.3f}, {fit} ({row['examples']} {row['split']} "
                "examples)", highlight=False)
    c.print(f"report: {Path(r.out_dir or '.').resolve() / 'report.html'}", highlight=False, soft_wrap=True)


def _print_check(recipe: object, trust_pickle: bool, quiet: bool) -> None:
    """``merge --check``: the mergeability of the recipe's models over its base, printed."""
    from ..errors import TransferlabError
    from ..merge import check_models

    if not getattr(recipe, "base", None) or len(recipe.models) < 2:  # type: ignore[attr-defined]
        raise TransferlabError("--check needs --base and at least two --models")
    r = check_models(recipe.base, [m.path for m in recipe.models],  # type: ignore[attr-defined]
                     head_prefix=recipe.head_prefix, trust_pickle=trust_pickle, progress=not quiet)  # type: ignore[attr-defined]
    c = console()
    c.print(r.short(), highlight=False, soft_wrap=True)
    c.print(f"base weights hash: {r.base_hash}", highlight=False)
    for m in r.models:
        c.print(f"  {m['model']}: task vector {100 * (m['relative_norm'] or 0):.2f} % of the base's norm, "
                f"{100 * (m['norm_vs_largest'] or 0):.0f} % of the largest's; "
                f"{100 * (m['untouched_tensors'] or 0):.0f} % of tensors as the base's", highlight=False)
    for p in r.pairs:
        cos = "n/a" if p["cosine"] is None else f"{p['cosine']:.3f}"
        c.print(f"  cosine {p['a']} / {p['b']}: {cos}", highlight=False)
    worst = sorted((x for x in r.layers if x["sign_conflict"] is not None), key=lambda x: -x["sign_conflict"])[:5]
    for x in worst:
        c.print(f"  sign conflicts {100 * x['sign_conflict']:.0f} %: {x['tensor']}", highlight=False)
    for w in r.warnings:
        c.print(f"[bold yellow]warning[/]: {w}", soft_wrap=True)
    if not r.warnings:
        c.print("no warning: the models look fine-tuned from this base, with one tokenizer", highlight=False)
