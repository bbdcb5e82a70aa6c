"""GPM's default energy threshold (issue 31): ``gpm`` at thresholds 0.97 (the default, the paper's), 0.98 and 0.99 on
the built-in 4-task stream and on ``builtin:stream-long``, 3 seeds, ``bench continual``'s defaults otherwise (the
small ResNet pretrained on shapes, 32 px, 3 epochs, 500 / 500 examples per task). One ``bench continual`` per
threshold, each cached in ``OUT-THRESHOLD/runs`` (a rerun resumes, or only prints); the table: ACC and BWT in points
(with each seed's), and the mean run seconds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual_gpm_threshold.py [--out runs/bench-continual-h4-gpm]

is the same as, per threshold T (097, 098, 099 in the folder's name),

    .venv/bin/transferlab bench continual --strategies gpm --option gpm.threshold=T --seeds 0,1,2 \\
        --stream builtin:fashion-mnist,builtin:digits,builtin:shapes,builtin:textures --stream builtin:stream-long \\
        --out runs/bench-continual-h4-gpm-097
"""

from __future__ import annotations

import argparse

import numpy as np

from transferlab.bench import TASK_STREAM, bench_continual

STREAMS = (TASK_STREAM, "builtin:stream-long")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-continual-h4-gpm", help="folder prefix: OUT-097, OUT-098, ...")
    ap.add_argument("--thresholds", default="0.97,0.98,0.99")
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    print("| stream | threshold | ACC | ACC per seed | BWT (points) | BWT per seed | run s |\n"
          "|---|---|---|---|---|---|---|")
    rows = []
    for t in (float(x) for x in a.thresholds.split(",")):
        r = bench_continual("builtin:small_resnet_shapes", out=f"{a.out}-{str(t).replace('.', '')}",
                            streams=STREAMS, strategies=["gpm"], seeds=seeds,
                            strategy_options={"gpm": {"threshold": t}})
        for stream in STREAMS:
            rs = sorted((x for x in r.runs if x["stream"] == stream), key=lambda x: x["seed"])
            acc, bwt = np.array([x["acc"] for x in rs]), 100 * np.array([x["bwt"] for x in rs])
            rows.append((stream, t, f"{acc.mean():.3f} ± {acc.std(ddof=1):.3f}",
                         ", ".join(f"{x:.3f}" for x in acc),
                         f"{bwt.mean():+.1f} ± {bwt.std(ddof=1):.1f}", ", ".join(f"{b:+.1f}" for b in bwt),
                         f"{np.mean([x['seconds'] for x in rs]):.0f}"))
    for stream in STREAMS:
        for row in (r for r in rows if r[0] == stream):
            print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
