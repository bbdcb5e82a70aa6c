"""``transferlab bench scaling``: the scaling law of downstream accuracy (cli/bench.py holds the other benches; it is
at the module size limit)."""

from __future__ import annotations

from pathlib import Path

import typer

from .bench import ADDRESS, BACKEND, CPUS_PER_RUN, DEVICE, GPUS_PER_RUN, PRECISION, _backend, _print_tables


def bench_scaling_cmd(
    source: str = typer.Option("builtin:mixed-source", "--source", help="The pretraining source (image data)."),
    target: str = typer.Option("builtin:shapes", "--target", help="The target each pretrained model is fine-tuned on."),
    arch: str = typer.Option("resnet", "--arch", help="Small architecture pretrained: resnet, convnext or vit."),
    sizes: str = typer.Option("250,500,1000,2000,4000", "--sizes", help="Comma-separated pretraining sizes (>= 4; "
                              "the largest is held back and predicted)."),
    finetune: str = typer.Option("100,300", "--finetune", help="Comma-separated fine-tuning sizes (one law each)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    pretrain_epochs: int = typer.Option(10, "--pretrain-epochs", min=1),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Fine-tuning epochs on the target."),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/bench-scaling"), "--out", "-o", help="Output directory (runs are cached)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Pretrain one small model on growing samples of the source, fine-tune each on the target: fit the log law of
    Isik et al. (2024) to target accuracy below the largest size and predict it."""
    from .._io import check_output
    from ..bench import bench_scaling
    from ..errors import TransferlabError

    try:
        size_list, ft_list, seed_list = ([int(s) for s in v.split(",") if s.strip()] for v in (sizes, finetune, seeds))
    except ValueError:
        raise TransferlabError(f"--sizes, --finetune and --seeds take whole numbers, got {sizes!r}, {finetune!r} and "
                               f"{seeds!r}") from None
    check_output(out)
    r = bench_scaling(out=out, source=source, target=target, arch=arch, sizes=size_list, finetune=ft_list,
                      seeds=seed_list, pretrain_epochs=pretrain_epochs, epochs=epochs, progress=not quiet,
                      **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables())
    c.print(f"bench_scaling.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)
