"""How well ``auto``'s calibration predicts a text fit's epoch (issue 17's open item): the calibration's probe fits
(``auto._plan.fit_cost``) against a real 3-epoch ``partial`` fit of MiniLM-L6 on Rotten Tomatoes, then one-epoch fits
on growing stratified samples (the marginal seconds per text at each size). Run alone; about 5 minutes.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_auto_text_epoch.py
"""

from __future__ import annotations

import tempfile
import time

from transferlab.auto import _plan as P
from transferlab.data import load_dataset
from transferlab.fit import fit

MODEL, DATA = "builtin:minilm_l6", "builtin:rotten-tomatoes"


def main() -> None:
    train = load_dataset(DATA)
    n_tr, n_val = P.split_sizes(len(train))
    c = P.fit_cost(train, MODEL, "partial", None, 0)
    est = c.estimate(n_tr, n_val, 0, 1) - c.estimate(n_tr, n_val, 0, 0)
    print(f"calibration: {est:.1f} s per epoch ({1000 * c.train_per_example:.2f} ms per training text)", flush=True)
    with tempfile.TemporaryDirectory() as d:
        r = fit(train, MODEL, "partial", out=f"{d}/o", epochs=3, seed=0)
    print(f"measured: {r.metrics['train_seconds'] / 3:.1f} s per epoch (3 epochs, with validation)", flush=True)
    for n in (64, 192, 384, 1024, 2048, len(train)):
        ds = train.stratified_sample(n, seed=0)
        t = time.perf_counter()
        r = fit(ds, MODEL, "partial", epochs=1, val_fraction=0.0, seed=0)
        print(f"{n:>5} texts: {r.metrics['train_seconds']:.2f} s training "
              f"({time.perf_counter() - t:.1f} s in all)", flush=True)


if __name__ == "__main__":
    main()
