"""``transferlab bench rank-adaptive``: the adaptive ranking against the full one (cli/bench.py holds the other
benches; it is at the module size limit)."""

from __future__ import annotations

from pathlib import Path

import typer

from .bench import ADDRESS, BACKEND, CPUS_PER_RUN, DEVICE, GPUS_PER_RUN, PRECISION, _backend, _print_tables


def bench_rank_adaptive_cmd(
    zoo: str = typer.Option("builtin:vision", "--zoo", "-z", help="Zoo reference or YAML file."),
    targets: str = typer.Option("builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures", "--targets",
                                "-t", help="Comma-separated target datasets."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds (the order of the examples and the "
                              "half-samples of each adaptive ranking)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Drop a model when its consensus is below the "
                                     "leader's in at least this share of half-samples (0.5 < c < 1)."),
    metrics: str = typer.Option(None, "--metrics", help="Comma-separated metrics (default: the default set)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Class-stratified sample of each train split."),
    image_size: int = typer.Option(None, "--image-size", min=8, help="Input size for image models (default: each "
                                   "model's)."),
    backend: str = BACKEND,
    address: str = ADDRESS,
    cpus_per_run: float = CPUS_PER_RUN,
    gpus_per_run: float = GPUS_PER_RUN,
    device: str = DEVICE,
    precision: str = PRECISION,
    out: Path = typer.Option(Path("runs/bench-rank-adaptive"), "--out", "-o", help="Output directory (runs are "
                             "cached)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Rank every target fully and adaptively (once per seed): the same top-1 and top-3 set, at what share of the
    forward passes."""
    from .._io import check_output
    from ..bench import bench_rank_adaptive
    from ..errors import TransferlabError

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise TransferlabError(f"--seeds takes whole numbers, got {seeds!r}") from None
    check_output(out)
    r = bench_rank_adaptive(zoo, [t.strip() for t in targets.split(",") if t.strip()], seeds=seed_list,
                            confidence=confidence, metrics=metrics, limit=limit, image_size=image_size, out=out,
                            progress=not quiet,
                            **_backend(backend, address, cpus_per_run, gpus_per_run, device, precision))
    paths = r.save(out)
    c = _print_tables(r.tables())
    c.print(f"bench_rank_adaptive.json: {paths['json'].resolve()}", highlight=False, soft_wrap=True)
