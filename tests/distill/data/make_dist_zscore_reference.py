"""Regenerate dist_zscore_reference.json: the reference implementations' own DIST, logit-standardised KD and DKD
losses on fixed logits.

    python tests/distill/data/make_dist_zscore_reference.py DIST_GIT_DIR LS_GIT_DIR

DIST_GIT_DIR: a clone of hunto/image_classification_sota (commit ``DIST_COMMIT``: lib/models/losses/dist_kd.py,
class ``DIST``); LS_GIT_DIR: a clone of sunshangquan/logit-standardization-KD (commit ``LS_COMMIT``:
mdistiller/distillers/KD.py ``kd_loss``, mdistiller/distillers/DKD.py ``dkd_loss``, each with ``logit_stand``).
Their files are read with ``git show`` and run as they are (only the package-relative import of the distiller base
class is dropped); no reference code is part of transferlab.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

DIST_COMMIT = "6f7a70a1dd57fd88413d83909d3d53243068f701"
LS_COMMIT = "f6e5aa5172bad618e801163c3385322eea673754"


def _module(git_dir: str, commit: str, path: str) -> dict:
    src = subprocess.run(["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    src = "\n".join(line for line in src.splitlines() if not line.startswith("from ._base"))
    ns: dict = {"Distiller": object}
    exec(compile(src, path, "exec"), ns)  # noqa: S102 - the reference's own file, to produce test vectors
    return ns


def main(dist_git: str, ls_git: str) -> None:
    dist_ns = _module(dist_git, DIST_COMMIT, "lib/models/losses/dist_kd.py")
    kd_ns = _module(ls_git, LS_COMMIT, "mdistiller/distillers/KD.py")
    dkd_ns = _module(ls_git, LS_COMMIT, "mdistiller/distillers/DKD.py")
    g = torch.Generator().manual_seed(33)
    cases = []
    for b, c, t, scale in ((8, 5, 1.0, 3.0), (6, 10, 4.0, 2.0), (4, 3, 2.0, 5.0), (12, 7, 2.0, 1.0)):
        zs = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
        zt = torch.randn(b, c, generator=g, dtype=torch.float64) * scale + 0.5
        y = torch.randint(0, c, (b,), generator=g)
        dist = dist_ns["DIST"](beta=1.0, gamma=1.0, tau=t)(zs, zt)
        dist_b = dist_ns["DIST"](beta=0.5, gamma=2.0, tau=t)(zs, zt)
        cases.append({
            "student": zs.tolist(), "teacher": zt.tolist(), "labels": y.tolist(), "temperature": t,
            "dist": float(dist), "dist_beta0.5_gamma2": float(dist_b),
            "kd_zscore": float(kd_ns["kd_loss"](zs, zt, t, True)), "kd_plain": float(kd_ns["kd_loss"](zs, zt, t, False)),
            "dkd_zscore_a1_b8": float(dkd_ns["dkd_loss"](zs, zt, y, 1.0, 8.0, t, True)),
            "normalised_student": kd_ns["normalize"](zs).tolist()})
    out = {"reference": {"dist": f"hunto/image_classification_sota @ {DIST_COMMIT}, lib/models/losses/dist_kd.py DIST",
                         "zscore": f"sunshangquan/logit-standardization-KD @ {LS_COMMIT}, mdistiller/distillers/KD.py "
                                   "kd_loss and normalize, DKD.py dkd_loss (logit_stand=True)"},
           "cases": cases}
    (Path(__file__).parent / "dist_zscore_reference.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
