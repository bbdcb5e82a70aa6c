"""Regenerate kd_reference.json: torchdistill's KDLoss on fixed logits.

    python tests/distill/data/make_reference.py /path/to/torchdistill-checkout

Reference: yoshitomo-matsubara/torchdistill @ 3e4373c45214c5c56eebac481d5bfe8b8735aa05,
torchdistill/losses/mid_level.py ``KDLoss`` (alpha·CE + (1 − alpha)·T²·KL, reduction 'batchmean'). Only the checkout
is imported; no torchdistill code is part of transferlab. Our kd_weight w is its 1 − alpha.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

COMMIT = "3e4373c45214c5c56eebac481d5bfe8b8735aa05"


def main(checkout: str) -> None:
    sys.path.insert(0, checkout)
    from torchdistill.losses.mid_level import KDLoss

    g = torch.Generator().manual_seed(0)
    cases = []
    for b, c, temperature, alpha, scale in ((8, 5, 4.0, 0.1, 3.0), (16, 10, 1.0, 0.5, 1.0), (4, 3, 2.5, 0.3, 5.0),
                                           (6, 7, 10.0, 0.9, 2.0)):
        zs = (torch.randn(b, c, generator=g, dtype=torch.float64) * scale)
        zt = (torch.randn(b, c, generator=g, dtype=torch.float64) * scale)
        y = torch.randint(0, c, (b,), generator=g)
        loss = KDLoss("s", "output", "t", "output", temperature, alpha=alpha)
        value = loss({"s": {"output": zs}}, {"t": {"output": zt}}, targets=y)
        cases.append({"student": zs.tolist(), "teacher": zt.tolist(), "labels": y.tolist(),
                      "temperature": temperature, "alpha": alpha, "loss": float(value)})
    out = {"reference": f"yoshitomo-matsubara/torchdistill @ {COMMIT}, torchdistill/losses/mid_level.py KDLoss",
           "cases": cases}
    (Path(__file__).parent / "kd_reference.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
