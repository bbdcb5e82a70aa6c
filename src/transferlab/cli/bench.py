"""``transferlab bench rank``: every metric's ranking quality against real fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._console import alias, console

app = typer.Typer(help="Ground truth for the claims: measure methods on your own data.", no_args_is_help=True)

# Where the runs go: the same four options on every bench (the bench harness's backend).
BACKEND = typer.Option("local", "--backend", help="local (one run after the other, in this process) or ray (every "
                       "run a Ray task, on a local Ray or the cluster at --address).")
ADDRESS = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="The Ray cluster's address (default: "
                       "$RAY_ADDRESS, else a local Ray started for the bench).")
CPUS_PER_RUN = typer.Option(None, "--cpus-per-run", min=0.01, help="CPUs Ray gives each run (default 1).")
GPUS_PER_RUN = typer.Option(None, "--gpus-per-run", min=0, help="GPUs Ray gives each run, a share like 0.5 "
                            "included (default 0).")
DEVICE = typer.Option(None, "--device", help="Where each run computes, on the machine it runs on: auto (CUDA when "
                      "available, else the CPU), cpu, cuda, cuda:N, mps (default: auto).")
PRECISION = typer.Option(None, "--precision", help="fp32 (default), bf16 (CPU and GPU), fp16 (GPU).")


def _backend(backend: str, address: str | None, cpus_per_run: float | None, gpus_per_run: float | None,
             device: str | None, precision: str | None) -> dict[str, Any]:
    """Where the runs go and how they compute, as every bench function takes them."""
    return {"backend": backend, "address": address, "cpus_per_run": cpus_per_run, "gpus_per_run": gpus_per_run,
            "device": device, "precision": precision}


@app.command("rank")
def bench_rank_cmd(
    zoo: str = typer.Option("builtin:vision", "--zoo", "-z", help="Zoo reference or YAML file."),
    targets: str = typer.Option(..., "--targets", "-t", help="Comma-separated target datasets."),
    fit_method: str = typer.Option("linear_probe", "--fit-method", help="Ground-truth protocol: linear_probe, "
                                   "finetune, lora, partial (any fit method), or best (per cell, the best of them "
                                   "by validation accuracy)."),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    ray_address: str = typer.Option(None, "--ray-address", hidden=True, help="Deprecated spelling of --address."),
    metrics: str = typer.Option(None, "--metrics", help="Comma-separated metrics (default: the default set)."),
    protocol: str = typer.Option(None, "--protocol", hidden=True, help="Deprecated spelling of --fit-method."),
    metrics_m: str = typer.Option(None, "-m", hidden=True, help="Deprecated spelling of --metrics."),
    limit: int = typer.Option(None, "--limit", min=1, help="Class-stratified sample of each train split."),
    image_size: int = typer.Option(None, "--image-size", min=8, help="Input size for image models (default: fit's)."),
    epochs: int = typer.Option(15, "--epochs", min=1, help="Most epochs per grid point of a training protocol."),
    patience: int = typer.Option(3, "--patience", min=1, help="Stop a grid point after this many epochs without a "
                                 "better validation accuracy."),
    grid: str = typer.Option(None, "--grid", help="The grid of a training protocol, e.g. "
                             "'lr=1e-3,3e-4;head_lr_scale=1,10' (default: 3 learning rates around the method's "
                             "default x head multiplier 1, 10)."),
    ensemble: int = typer.Option(None, "--ensemble", min=1, help="Also choose and validate a K-model ensemble."),
    replicates: int = typer.Option(1, "--replicates", min=1, help="Fit every ground-truth cell K times with "
                                   "different seeds: the noise ceiling (the τw between replicates) beside every "
                                   "score; the ground truth is their mean."),
    lr_extend: int = typer.Option(2, "--lr-extend", min=0, help="A cell whose best learning rate is the grid's "
                                  "largest or smallest tries up to this many more beyond it (0: the grid only)."),
    layers: str = typer.Option("last", "--layers", help="Which features the metrics score (rank --layers): last, "
                               "mean or best."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/bench-rank"), "--out", "-o", help="Output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Score every model with every metric, fit every (model, target) for ground truth, report weighted tau."""
    from .._io import check_output
    from ..bench import bench_rank

    check_output(out)
    protocol = alias("--fit-method", "--protocol", fit_method, protocol)
    metrics = alias("--metrics", "-m", metrics, metrics_m)
    address = alias("--address", "--ray-address", address, ray_address)
    r = bench_rank(zoo, targets, protocol=protocol, metrics=metrics, limit=limit, image_size=image_size,
                   epochs=epochs, patience=patience, grid=_grid(grid), seed=seed, progress=not quiet,
                   ensemble=ensemble, replicates=replicates, lr_extend=lr_extend, layers=layers,
                   **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables(), ("tau", "priors", "noise", "ensemble"))
    ch = r.checks or {}
    if r.protocol != "linear_probe":
        c.print(f"ground truth ({r.protocol}): {sum(len(v) for v in r.cells.values())} cells, "
                f"{len(ch.get('under_trained', []))} under-trained, {len(ch.get('not_converged', []))} without a "
                f"plateau, {len(ch.get('fallbacks', []))} linear-probe fallbacks (warnings above; report.html)",
                highlight=False)
    c.print(r.cost_line(), highlight=False)  # a warm ranking says so and gives the cold figure
    c.print(f"bench.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)


def _print_tables(tables: list[Any], names: tuple[str, ...] | None = None) -> Any:
    """A result's declared tables (those called ``names``) on the console; returns the console."""
    from ..report import render_console

    c = console()
    for t in tables:
        if names is None or t.name in names:
            c.print(render_console(t))
    return c


def _grid(text: str | None) -> dict[str, list[float | int]] | None:
    """``'lr=1e-3,3e-4;head_lr_scale=1,10'`` -> ``{"lr": [0.001, 0.0003], "head_lr_scale": [1.0, 10.0]}``."""
    from ..errors import TransferlabError

    if not text:
        return None
    out: dict[str, list[float | int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, eq, values = part.partition("=")
        try:  # whole numbers stay ints (blocks=1,2), the rest are floats (lr=1e-3)
            vals = [int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            vals = []
        if not eq or not key.strip() or not vals:
            raise TransferlabError(f"--grid: cannot read {part!r}; write KEY=V1,V2;KEY2=V3 (e.g. "
                                   "'lr=1e-3,3e-4;head_lr_scale=1,10')")
        out[key.strip()] = vals
    return out


def _method_options(pairs: list[str]) -> dict[str, dict[str, object]]:
    """``--option METHOD.KEY=VALUE`` (repeatable) -> ``{method: {key: value}}`` (values read as JSON when they are)."""
    from .fit import _options

    per: dict[str, dict[str, object]] = {}
    for k, v in _options(pairs).items():
        if "." not in k:
            raise typer.BadParameter(f"--option takes METHOD.KEY=VALUE, got {k}")
        m, key = k.split(".", 1)
        per.setdefault(m, {})[key] = v
    return per


@app.command("merge")
def bench_merge_cmd(
    model: str = typer.Option("builtin:efficientnet_lite0", "--model", "-m", help="Base model to fine-tune."),
    targets: str = typer.Option(..., "--targets", "-t", help="Comma-separated target datasets (>= 2)."),
    methods: str = typer.Option(None, "--methods", help="Comma-separated merge methods (default: all)."),
    fit_method: str = typer.Option("finetune", "--fit-method", help="How each task is fine-tuned."),
    fit_option: list[str] = typer.Option([], "--fit-option", help="KEY=VALUE for every fit, e.g. lr=3e-5 "
                                         "(repeatable)."),
    epochs: int = typer.Option(3, "--epochs", min=1),
    limit: int = typer.Option(None, "--limit", min=1, help="Class-stratified sample of each train split."),
    test_limit: int = typer.Option(None, "--test-limit", min=1, help="Class-stratified sample of each test split."),
    image_size: int = typer.Option(None, "--image-size", min=8, help="Input size (default: fit's)."),
    option: list[str] = typer.Option([], "--option", help="METHOD.KEY=VALUE, e.g. ties.density=0.1 (repeatable)."),
    reset_norms: bool = typer.Option(False, "--reset-norms", help="Re-estimate every merged network's batch-norm "
                                     "statistics on the training samples."),
    tune: bool = typer.Option(False, "--tune", help="Also pick lam of task_arithmetic/ties/dare/tsv/iso on held-out "
                              "validation examples (rows METHOD+tuned)."),
    seed: int = typer.Option(0, "--seed"),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/bench-merge"), "--out", "-o", help="Output directory (fits are cached)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Fine-tune one model on each target, merge with every method, report per-task and normalised accuracy."""
    from .._io import check_output
    from ..bench import bench_merge
    from .fit import _options

    check_output(out)
    per = _method_options(option)
    r = bench_merge(model, targets, out=out, methods=methods, fit_method=fit_method, epochs=epochs, limit=limit,
                    fit_options=_options(fit_option),
                    test_limit=test_limit, image_size=image_size, method_options=per, seed=seed, progress=not quiet,
                    reset_norms=reset_norms, tune=tune, **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables())
    c.print(f"bench_merge.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)


@app.command("domain")
def bench_domain_cmd(
    model: str = typer.Option("builtin:small_resnet_shapes", "--model", "-m", help="Image model to adapt."),
    shifts: str = typer.Option(None, "--shifts", help="Comma-separated SOURCE>TARGET pairs (default: "
                               "builtin:digits>builtin:digits-m,builtin:shapes>builtin:shapes-sketch)."),
    methods: str = typer.Option(None, "--methods", help="Comma-separated methods (default: all)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    trade_offs: str = typer.Option("0.1,0.3,1,3", "--trade-offs", help="Comma-separated trade-offs (> 0)."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    lr: float = typer.Option(None, "--lr", help="Learning rate of the head and discriminator (default: domain's, "
                             "1e-2, backbone 0.1x; 1e-3 for shot, nrc, aad)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Examples of each training split (target: random)."),
    test_limit: int = typer.Option(None, "--test-limit", min=1, help="Examples of the target's test split."),
    image_size: int = typer.Option(None, "--image-size", min=8),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    option: list[str] = typer.Option([], "--option", help="METHOD.KEY=VALUE, e.g. dann.hidden=256 (repeatable)."),
    no_supervised: bool = typer.Option(False, "--no-supervised", help="Skip the target-supervised upper bound."),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/bench-domain"), "--out", "-o", help="Output directory (runs are cached)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Every domain adaptation method on the built-in shifts over seeds and trade-offs, and every label-free
    selector against the oracle target accuracy."""
    from .._io import check_output
    from ..bench import bench_domain
    from ..errors import TransferlabError

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        trade_list = [float(t) for t in trade_offs.split(",") if t.strip()]
    except ValueError:
        raise TransferlabError(f"--seeds takes whole numbers and --trade-offs numbers, got {seeds!r} and "
                               f"{trade_offs!r}") from None
    pairs = None
    if shifts:
        pairs = [tuple(p.split(">", 1)) for p in shifts.split(",") if p.strip()]
        if any(len(p) != 2 or not all(p) for p in pairs):
            raise TransferlabError(f"--shifts takes SOURCE>TARGET pairs, got {shifts!r}")
    check_output(out)
    r = bench_domain(model, out=out, shifts=pairs, methods=methods, seeds=seed_list, trade_offs=trade_list, epochs=epochs, lr=lr,
                     limit=limit, test_limit=test_limit, image_size=image_size, batch_size=batch_size,
                     supervised=not no_supervised, method_options=_method_options(option), progress=not quiet,
                     **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables())
    c.print(f"bench_domain.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)


@app.command("distill")
def bench_distill_cmd(
    targets: str = typer.Option("builtin:shapes,builtin:fashion-mnist", "--targets", help="Comma-separated datasets."),
    teachers: str = typer.Option("builtin:efficientnet_lite0,builtin:small_convnext_fashion", "--teachers",
                                 help="Comma-separated teacher models (>= 2), each fine-tuned on every target."),
    students: str = typer.Option("builtin:small_resnet_shapes", "--students", help="Comma-separated students."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    label_shares: str = typer.Option("1,0.2", "--label-shares", help="Shares of the training labels kept (the rest "
                                     "is distilled as unlabelled examples)."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    teacher_epochs: int = typer.Option(None, "--teacher-epochs", min=1, help="Default: --epochs."),
    limit: int = typer.Option(1000, "--limit", min=1, help="Class-stratified sample of each train split."),
    test_limit: int = typer.Option(500, "--test-limit", min=1, help="Class-stratified sample of each test split."),
    image_size: int = typer.Option(32, "--image-size", min=8, help="The students' input size."),
    teacher_image_size: int = typer.Option(None, "--teacher-image-size", min=8, help="Default: --image-size."),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    option: list[str] = typer.Option([], "--option", help="METHOD.KEY=VALUE, e.g. kd.temperature=2 (repeatable)."),
    rows: str = typer.Option("", "--rows", help="Row families (default: all but dkd, dist, kd_zscore): kd, multi_avg, "
                             "multi_weighted, feature, kd_trained, kl_dp_trained, dkd, dist, kd_zscore."),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/bench-distill"), "--out", "-o", help="Output directory (runs are cached)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Every distillation method against the labels-only student, with all labels and with a share of them."""
    from .._io import check_output
    from ..bench import bench_distill
    from ..errors import TransferlabError

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    try:
        seed_list = [int(s) for s in split(seeds)]
        shares = [float(s) for s in split(label_shares)]
    except ValueError:
        raise TransferlabError(f"--seeds takes whole numbers and --label-shares numbers, got {seeds!r} and "
                               f"{label_shares!r}") from None
    check_output(out)
    r = bench_distill(out=out, targets=split(targets), teachers=split(teachers), students=split(students),
                      seeds=seed_list, label_shares=shares, epochs=epochs, teacher_epochs=teacher_epochs, limit=limit,
                      test_limit=test_limit, image_size=image_size, teacher_image_size=teacher_image_size,
                      batch_size=batch_size, method_options=_method_options(option), rows=split(rows) or None,
                      progress=not quiet, **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables())
    c.print(f"bench_distill.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)


@app.command("continual")
def bench_continual_cmd(
    model: str = typer.Option("builtin:small_resnet_shapes", "--model", "-m", help="Model every strategy adapts."),
    streams: list[str] = typer.Option([], "--stream", help="A stream: comma-separated datasets (task-incremental) or "
                                      "DATA:K (class split). Repeatable; default: the four built-in targets and "
                                      "builtin:fashion-mnist:5."),
    strategies: str = typer.Option(None, "--strategies", help="Comma-separated strategies (default: all)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Epochs per task."),
    lr: float = typer.Option(None, "--lr"),
    limit: int = typer.Option(500, "--limit", min=1, help="Class-stratified sample of each task's train split."),
    test_limit: int = typer.Option(500, "--test-limit", min=1, help="... and of its test split."),
    image_size: int = typer.Option(32, "--image-size", min=8),
    batch_size: int = typer.Option(32, "--batch-size", min=2),
    option: list[str] = typer.Option([], "--option", help="STRATEGY.KEY=VALUE, e.g. replay.buffer_size=500."),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/bench-continual"), "--out", "-o", help="Output directory (runs are cached)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Every continual strategy on the built-in streams: ACC, BWT, FWT, time, memory, parameters per task."""
    from .._io import check_output
    from ..bench import CLASS_SPLIT, TASK_STREAM, bench_continual
    from ..errors import TransferlabError

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise TransferlabError(f"--seeds takes whole numbers, got {seeds!r}") from None
    check_output(out)
    r = bench_continual(model, out=out, streams=streams or [TASK_STREAM, CLASS_SPLIT],
                        strategies=[s.strip() for s in strategies.split(",") if s.strip()] if strategies else None,
                        seeds=seed_list, epochs=epochs, limit=limit, test_limit=test_limit, image_size=image_size,
                        batch_size=batch_size, lr=lr, strategy_options=_method_options(option), progress=not quiet,
                        **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables())
    c.print(f"bench_continual.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)


@app.command("prune")
def bench_prune_cmd(
    source: str = typer.Option("builtin:mixed-source", "--source", help="The source to prune (>= 20 classes)."),
    targets: str = typer.Option("builtin:shapes,builtin:textures", "--targets", help="Comma-separated targets "
                                "(classes outside the source)."),
    arch: str = typer.Option("resnet", "--arch", help="Small architecture pretrained: resnet, convnext or vit."),
    keep: float = typer.Option(0.5, "--keep", help="Share of the source classes kept, in (0, 1)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    pretrain_epochs: int = typer.Option(10, "--pretrain-epochs", min=1),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Fine-tuning epochs on the target."),
    limit: int = typer.Option(None, "--limit", min=10, help="Class-stratified sample of the source (quick checks)."),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/bench-prune"), "--out", "-o", help="Output directory (runs are cached)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Pretrain one small model on the full source and on the label_map, feature_map, random and bottom-ranked
    shares of its classes; fine-tune each on the targets: target accuracy and pretraining time."""
    from .._io import check_output
    from ..bench import bench_prune
    from ..errors import TransferlabError

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise TransferlabError(f"--seeds takes whole numbers, got {seeds!r}") from None
    check_output(out)
    r = bench_prune(out=out, source=source, targets=[t.strip() for t in targets.split(",") if t.strip()], arch=arch,
                    keep=keep, seeds=seed_list, pretrain_epochs=pretrain_epochs, epochs=epochs, limit=limit,
                    progress=not quiet, **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables())
    c.print(f"bench_prune.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)
