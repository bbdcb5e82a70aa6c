"""Check that a refactor changed no result: fit several methods with the working tree and with an earlier commit
(``--before REF``, run from a temporary ``git worktree``), each in its own process, and compare the trained weights
bit for bit, the test and validation accuracies and the per-epoch training losses.

    .venv/bin/python scripts/check_same_results.py --before 1bf8ea6

Exit status 0 when every method matches, 1 otherwise. Small on purpose (200 digits, a small built-in ResNet, 32 px,
2 epochs): about a minute per side on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = [("head", {}), ("lora", {}), ("bitfit", {}), ("finetune", {"l2sp": 0.1}), ("adapter", {}),
           ("sparse", {"density": 0.05})]


def child() -> None:
    import hashlib

    import transferlab
    from transferlab.data import load_dataset
    from transferlab.fit import fit

    print("transferlab from", transferlab.__file__, file=sys.stderr)
    tr = load_dataset("builtin:digits", "train").stratified_sample(200, seed=0)
    te = load_dataset("builtin:digits", "test").stratified_sample(100, seed=0)
    out = {}
    for method, opts in METHODS:
        r = fit(tr, "builtin:small_resnet_shapes", method, test=te, epochs=2, image_size=32, seed=1, **opts)
        h = hashlib.sha256()
        for k, v in r.model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        out[method] = {"weights_sha256": h.hexdigest(), "test": r.metrics["test_accuracy"],
                       "val": r.metrics["val_accuracy"], "train_loss": [x["train_loss"] for x in r.history]}
    print(json.dumps(out))


def run(src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True, capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    assert str(src) in res.stderr, f"the child did not import transferlab from {src}: {res.stderr[-500:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=False, default="HEAD~1", help="git ref to compare the working tree with")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child()
        return 0
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="same_results."))
    tree = tmp / "tree"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), args.before], check=True,
                   capture_output=True)
    try:
        before, after = run(tree / "src"), run(root / "src")
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    ok = True
    for method, _ in METHODS:
        same = before[method] == after[method]
        ok &= same
        print(f"{method:10s} {'same' if same else 'DIFFERENT'}  test {after[method]['test']:.3f} "
              f"(before {before[method]['test']:.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
