"""Benchmark: TIES-merging four checkpoints against the bare cost of reading them and writing the output.

Setup (built once in ``--workdir``, reused while it is there): a base checkpoint (timm ``--model``, default
``vit_base_patch16_224``, 86M parameters, ``pretrained=False``, seeded) and 4 "fine-tuned" ones (base + seeded
gaussian noise, 1e-3 x each tensor's std), float32 ``.safetensors``. Each job runs in its own subprocess, so
its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) is its own; every job first imports torch, safetensors and
transferlab.merge, and only the work after the imports is timed:

- bare: read the 4 models, then the base, fully (``safetensors.torch.load_file(backend="pread")``: the default
  mmap backend of safetensors 0.8 reads nothing until touched), one at a time, each dropped, and write the
  base's tensors to one output file (``save_file`` + fsync, as merge does);
- ties: ``merge_models("ties", base, models, out, overwrite=True)`` (density 0.2, scope "model": one pass per
  model for the global trim threshold, then the merging pass; writes model.safetensors, heads/, config.json);
- import: the imports only (the RSS baseline).

The page cache is not dropped (that needs root): all files are read once before timing, so bare and ties
both read from the page cache. Linux carries ``ru_maxrss`` over fork and exec, so the parent stays small (no
torch; the checkpoints are built in a subprocess too); it counts the touched pages of mmapped files too (merge
maps its sources). Reported: medians over ``--repeats`` rounds (bare, ties, import in turn); MB = 2**20 bytes.
Torch threads: torch's default unless ``--threads``; the load average is recorded, since on a 2-core machine
another busy process slows 2-thread torch ops several times over.

Exact command (repository root, project venv):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_merge_perf.py --json merge_perf.json

Options: --model NAME, --tiny (vit_tiny_patch16_224), --repeats 3, --threads N, --workdir, --keep, --json.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

N_MODELS = 4
MB = 2**20


def paths(work: Path) -> tuple[Path, list[Path]]:
    return work / "base.safetensors", [work / f"ft{i + 1}.safetensors" for i in range(N_MODELS)]


def build(work: Path, model: str) -> dict[str, Any]:
    """Base + fine-tuned checkpoints in ``work``, reused when ``work/meta.json`` says they are there."""
    meta_path = work / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("model") == model:
        return json.loads(meta_path.read_text())
    import timm
    import torch
    from safetensors.torch import save_file

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base_path, model_paths = paths(work)
    torch.manual_seed(0)
    net = timm.create_model(model, pretrained=False)
    base = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    save_file(base, str(base_path))
    g = torch.Generator().manual_seed(1)
    for p in model_paths:
        ft: dict[str, torch.Tensor] = {}
        for k, v in base.items():
            std = v.std().item() if v.numel() > 1 else v.abs().item()
            ft[k] = v + torch.randn(v.shape, generator=g) * (1e-3 * (std or 1.0))
        save_file(ft, str(p))
    meta = {"model": model, "params": sum(v.numel() for v in base.values()), "tensors": len(base),
            "model_mb": base_path.stat().st_size / MB}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def job(kind: str, work: Path, threads: int | None) -> dict[str, Any]:
    """One measurement, in a fresh process: seconds of the work after the imports, and the peak RSS."""
    import safetensors.torch as st
    import torch

    import transferlab.merge as tm

    if threads:
        torch.set_num_threads(threads)
    base, models = paths(work)
    seconds = 0.0
    if kind == "bare":
        out = work / "bare_out.safetensors"
        out.unlink(missing_ok=True)
        pread = "backend" in inspect.signature(st.load_file).parameters  # safetensors < 0.8: no backend
        kw: dict[str, Any] = {"backend": "pread"} if pread else {}
        t = time.perf_counter()
        for p in models:
            st.load_file(str(p), **kw)  # read fully, dropped at once
        st.save_file(st.load_file(str(base), **kw), str(out))
        with open(out, "rb") as fh:
            os.fsync(fh.fileno())
        seconds = time.perf_counter() - t
    elif kind == "ties":
        out = work / "ties_out"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        tm.merge_models("ties", str(base), [str(p) for p in models], out, overwrite=True, progress=False)
        seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {"seconds": seconds, "peak_rss_mb": rss, "threads": torch.get_num_threads()}


def run_job(kind: str, args: argparse.Namespace, model: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_job", kind, "--workdir", str(args.workdir), "--model", model]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def warm_up(work: Path) -> None:
    base, models = paths(work)
    for p in [base, *models]:
        with open(p, "rb") as fh:
            while fh.read(MB):  # small reads: the parent's RSS is the floor of its children's ru_maxrss
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_base_patch16_224", help="timm model name")
    ap.add_argument("--tiny", action="store_true", help="quick check with vit_tiny_patch16_224")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the jobs (default: torch's)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/transferlab-merge-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the workdir (and its checkpoints) afterwards")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--_job", choices=["build", "bare", "ties", "import"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    model = "vit_tiny_patch16_224" if args.tiny else args.model
    if args._job:
        work = args.workdir
        print(json.dumps(build(work, model) if args._job == "build" else job(args._job, work, args.threads)))
        return
    load = [os.getloadavg()[0]]
    try:
        meta = run_job("build", args, model)
        print(f"checkpoints: {model}, {meta['params'] / 1e6:.1f}M params, {meta['tensors']} tensors, "
              f"{meta['model_mb']:.0f} MB each, base + {N_MODELS} fine-tuned", flush=True)
        warm_up(args.workdir)
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "ties": [], "import": []}
        for _ in range(args.repeats):
            for kind, acc in runs.items():
                acc.append(run_job(kind, args, model))
        load.append(os.getloadavg()[0])
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    bare_s, ties_s, mb = med("bare", "seconds"), med("ties", "seconds"), meta["model_mb"]
    rss = {k: med(k, "peak_rss_mb") for k in runs}
    result = {"model": model, "params": meta["params"], "model_mb": mb, "n_models": N_MODELS,
              "repeats": args.repeats, "torch_threads": runs["ties"][0]["threads"], "cpus": os.cpu_count(),
              "load_avg_1min_start_end": load, "page_cache": "warm (not dropped)",
              "bare_s": bare_s, "ties_s": ties_s, "ratio_ties_over_bare": ties_s / bare_s,
              **{f"{k}_peak_rss_mb": v for k, v in rss.items()}, "ties_rss_over_model": rss["ties"] / mb,
              "ties_rss_minus_import_over_model": (rss["ties"] - rss["import"]) / mb, "runs": runs}
    print(f"{os.cpu_count()} CPUs, torch threads {result['torch_threads']}, load average {load[0]:.2f} "
          f"at start, {load[1]:.2f} at end; page cache warm (not dropped); medians of {args.repeats}")
    for kind in ("bare", "ties"):
        print(f"{kind:<6} {med(kind, 'seconds'):7.2f} s  peak RSS {rss[kind]:7.0f} MB  "
              f"(runs {', '.join(format(r['seconds'], '.2f') for r in runs[kind])} s)")
    print(f"import {'':>9}  peak RSS {rss['import']:7.0f} MB")
    print(f"ratio ties / bare = {result['ratio_ties_over_bare']:.2f}")
    print(f"ties peak RSS / model size = {result['ties_rss_over_model']:.2f} raw, "
          f"{result['ties_rss_minus_import_over_model']:.2f} minus the import baseline")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
