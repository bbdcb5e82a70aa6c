"""GPM's forgetting on ``builtin:stream-long`` (issue 31): one seed of ``gpm`` with the options given, ACC, BWT and
what digits 0–4 (task 1) keep after digits 5–9 and the rest trained. ``bench continual``'s defaults otherwise (3
epochs, 500 / 500 examples per task, 32 px, batch 32).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual_gpm_long.py --seed 2 --options '{"threshold": 0.99}'
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual_gpm_long.py --seed 2 --options '{"n_examples": 500}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from transferlab.continual import parse_stream, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--options", default="{}", help="gpm's options as JSON")
    ap.add_argument("--model", default="builtin:small_resnet_shapes")
    a = ap.parse_args()
    opts = json.loads(a.options)
    stream = parse_stream("builtin:stream-long", None, limit=500, test_limit=500)
    t0 = time.perf_counter()
    m = run(stream, a.model, "gpm", epochs=3, batch_size=32, image_size=32, seed=a.seed, **opts).metrics
    r = np.asarray(m["accuracy_matrix"])
    print(f"gpm {opts} seed {a.seed}: ACC {m['acc']:.3f}, BWT {100 * m['bwt']:+.1f} points, {m['tasks'][1]} "
          f"{r[1, 1]:.3f} after its task -> {r[-1, 1]:.3f} at the end ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
