#!/usr/bin/env python
"""Generate reference values from thuml/Transfer-Learning-Library (TLlib) for domain-adaptation losses.

Usage:
    python tests/domain/data/make_tllib_reference.py /path/to/Transfer-Learning-Library [--commit SHA]

The argument is a checkout of TLlib (the directory that contains the ``tllib`` package).  This script is our
own code: it only *imports* TLlib, builds fixed inputs, runs TLlib's losses on them and writes

    tests/domain/data/tllib_reference.npz   (arrays, keys described in the JSON)
    tests/domain/data/tllib_reference.json  (every key with shape/dtype/meaning, versions, formula notes)

Import strategy: importing the top-level ``tllib`` package would execute ``tllib/__init__.py``, which pulls in
every sub-package (vision, translation, ranking, ...) and optional dependencies.  Instead we register empty
package objects for ``tllib``, ``tllib.modules``, ``tllib.alignment``, ``tllib.self_training`` and
``tllib.utils`` in ``sys.modules`` (with ``__path__`` pointing at the real directories, so their
``__init__.py`` files are not executed) and import only the module files we need.  ``tllib.utils.metric``
(``binary_accuracy``) imports ``prettytable`` at module level but never uses it for what we call, so an empty
``prettytable`` stub is registered if the real package is not installed.  TLlib's GRL calls ``np.float``
(removed in NumPy 1.24); if missing, ``np.float`` is set to the builtin ``float`` (what it aliased).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import importlib.util
import json
import platform
import subprocess
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT_NPZ = HERE / "tllib_reference.npz"
OUT_JSON = HERE / "tllib_reference.json"

N, FEAT, CLS, HID, RDIM = 8, 16, 5, 32, 24
GRL_A_ITERS = [0, 1, 100, 500, 1000]
FIXED_ITER = 500  # iter_num of the fixed-coefficient GRL used by DANN and CDAN

SOURCE_FILES = [
    "tllib/modules/grl.py",
    "tllib/alignment/dann.py",
    "tllib/alignment/cdan.py",
    "tllib/self_training/mcc.py",
    "tllib/modules/domain_discriminator.py",
    "tllib/modules/entropy.py",
    "tllib/modules/classifier.py",
    "tllib/utils/metric/__init__.py",
]


# --------------------------------------------------------------------------------------------- import TLlib
def load_tllib(root: Path) -> dict[str, types.ModuleType]:
    shims = []
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]  # removed alias used by tllib/modules/grl.py
        shims.append("np.float = float (NumPy >= 1.24 removed the alias; grl.py uses np.float(...))")
    if importlib.util.find_spec("prettytable") is None:
        sys.modules["prettytable"] = types.ModuleType("prettytable")
        shims.append("empty 'prettytable' module stub (imported by tllib/utils/metric/__init__.py, unused here)")
    for name in ["tllib", "tllib.modules", "tllib.alignment", "tllib.self_training", "tllib.utils"]:
        if name in sys.modules:
            continue
        mod = types.ModuleType(name)
        mod.__path__ = [str(root / name.replace(".", "/"))]
        mod.__package__ = name
        sys.modules[name] = mod
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, mod)
    shims.append("package __init__ files of tllib, tllib.modules, tllib.alignment, tllib.self_training, "
                 "tllib.utils not executed (empty package objects with the real __path__)")
    mods = {
        "grl": importlib.import_module("tllib.modules.grl"),
        "dd": importlib.import_module("tllib.modules.domain_discriminator"),
        "entropy": importlib.import_module("tllib.modules.entropy"),
        "dann": importlib.import_module("tllib.alignment.dann"),
        "cdan": importlib.import_module("tllib.alignment.cdan"),
        "mcc": importlib.import_module("tllib.self_training.mcc"),
    }
    for m in mods.values():
        assert Path(m.__file__).resolve().is_relative_to(root.resolve()), m.__file__
    return {"mods": mods, "shims": shims}


def tllib_commit(root: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------------------------- helpers
class Store:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.meaning: dict[str, str] = {}

    def put(self, key: str, value, meaning: str) -> None:
        assert key not in self.arrays, key
        if isinstance(value, torch.Tensor):
            arr = value.detach().cpu().numpy().copy()
        elif isinstance(value, float):
            arr = np.asarray(value, dtype=np.float64)
        else:
            arr = np.asarray(value)
        self.arrays[key] = arr
        self.meaning[key] = meaning

    def put_state(self, prefix: str, module: torch.nn.Module, what: str) -> None:
        for name, t in module.state_dict().items():
            self.put(f"{prefix}.{name}", t, f"{what}: state_dict entry '{name}' (initial values, before any forward)")


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


@contextmanager
def spy_grl_coeff(grl_mod, record: list):
    """Temporarily wrap tllib.modules.grl.GradientReverseFunction to record the coefficient passed to it."""
    orig = grl_mod.GradientReverseFunction

    class Spy:
        @staticmethod
        def apply(x, coeff=1.0):
            record.append(coeff)
            return orig.apply(x, coeff)

    grl_mod.GradientReverseFunction = Spy
    try:
        yield
    finally:
        grl_mod.GradientReverseFunction = orig


def capture_io(module: torch.nn.Module, sink: dict):
    def hook(mod, inp, out):
        sink["in"] = inp[0].detach().clone()
        sink["out"] = out.detach().clone()
    return module.register_forward_hook(hook)


def grad_or_zeros(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    return (t.grad, True) if t.grad is not None else (torch.zeros_like(t), False)


# --------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tllib_root", type=Path, help="checkout of thuml/Transfer-Learning-Library")
    ap.add_argument("--commit", default=None, help="TLlib commit (default: git rev-parse HEAD in tllib_root)")
    args = ap.parse_args()
    root = args.tllib_root.resolve()

    torch.set_num_threads(1)
    loaded = load_tllib(root)
    M = loaded["mods"]
    grl_mod = M["grl"]
    WarmStartGRL = grl_mod.WarmStartGradientReverseLayer
    DomainDiscriminator = M["dd"].DomainDiscriminator
    DomainAdversarialLoss = M["dann"].DomainAdversarialLoss
    CDANLoss = M["cdan"].ConditionalDomainAdversarialLoss
    MCCLoss = M["mcc"].MinimumClassConfusionLoss

    S = Store()
    facts: dict[str, object] = {}

    def fixed_grl():
        g = WarmStartGRL(alpha=1.0, lo=0.0, hi=1.0, max_iters=1000, auto_step=False)
        g.iter_num = FIXED_ITER
        return g

    # ---------------- fixed inputs (order matters: one RNG stream from manual_seed(0))
    torch.manual_seed(0)
    f_s = torch.randn(N, FEAT)
    f_t = torch.randn(N, FEAT)
    g_s = torch.randn(N, CLS) * 2
    g_t = torch.randn(N, CLS) * 2
    disc16 = DomainDiscriminator(in_feature=FEAT, hidden_size=HID).train()
    disc80 = DomainDiscriminator(in_feature=FEAT * CLS, hidden_size=HID).train()
    torch.manual_seed(2)
    disc24 = DomainDiscriminator(in_feature=RDIM, hidden_size=HID).train()
    facts["discriminator_repr"] = str(disc16)
    facts["discriminator_training_mode"] = bool(disc16.training)

    S.put("input.f_s", f_s, "source features [8,16]; torch.manual_seed(0) then 1st torch.randn(8,16)")
    S.put("input.f_t", f_t, "target features [8,16]; 2nd torch.randn(8,16)")
    S.put("input.g_s", g_s, "source logits [8,5]; torch.randn(8,5)*2 after f_t")
    S.put("input.g_t", g_t, "target logits [8,5]; torch.randn(8,5)*2 after g_s")
    S.put_state("disc16", disc16, "DomainDiscriminator(in_feature=16, hidden_size=32), created right after g_t "
                "(same seed-0 stream), used by DANN")
    S.put_state("disc80", disc80, "DomainDiscriminator(in_feature=80, hidden_size=32), created right after disc16, "
                "used by CDAN and CDAN+E")
    S.put_state("disc24", disc24, "DomainDiscriminator(in_feature=24, hidden_size=32), created right after "
                "torch.manual_seed(2), used by randomized CDAN")

    # ---------------- a. GRL
    grl = WarmStartGRL(alpha=10, lo=0, hi=1, max_iters=1000, auto_step=False)
    coeffs = []
    for it in GRL_A_ITERS:
        grl.iter_num = it
        rec: list = []
        x = leaf(f_s)
        with spy_grl_coeff(grl_mod, rec):
            y = grl(x)
        assert torch.equal(y, f_s)
        coeffs.append(float(rec[0]))
    S.put("grl.iter_nums", np.asarray(GRL_A_ITERS, dtype=np.int64), "iter_num values for grl.coeffs")
    S.put("grl.coeffs", np.asarray(coeffs, dtype=np.float64),
          "WarmStartGradientReverseLayer(alpha=10, lo=0, hi=1, max_iters=1000, auto_step=False) coefficient "
          "at each grl.iter_nums (python float, float64)")
    grl.iter_num = 500
    rec = []
    x = leaf(f_s)
    with spy_grl_coeff(grl_mod, rec):
        (grl(x) * f_t).sum().backward()
    S.put("grl.coeff_iter500", float(rec[0]), "coefficient used in the iter_num=500 backward check")
    S.put("grl.grad_x_iter500", x.grad, "d/dx sum(GRL(x) * w) with x=f_s, w=f_t, iter_num=500 (= -coeff*w)")
    expected = -float(rec[0]) * f_t
    facts["grl_grad_equals_minus_coeff_w_exactly"] = bool(torch.equal(x.grad, expected))
    facts["grl_grad_max_abs_diff_vs_minus_coeff_w"] = float((x.grad - expected).abs().max())

    # ---------------- b. DANN
    def run_dann(weighted: bool, prefix: str, desc: str):
        D = copy.deepcopy(disc16).train()
        loss_fn = DomainAdversarialLoss(D, reduction="mean", grl=fixed_grl())
        fs, ft = leaf(f_s), leaf(f_t)
        io: dict = {}
        h = capture_io(D, io)
        rec: list = []
        with spy_grl_coeff(grl_mod, rec):
            if weighted:
                w_s = torch.linspace(0.5, 1.5, N)
                w_t = torch.linspace(1.5, 0.5, N)
                loss = loss_fn(fs, ft, w_s, w_t)
            else:
                loss = loss_fn(fs, ft)
        h.remove()
        loss.backward()
        assert len(rec) == 1
        S.put(f"{prefix}.grl_coeff", float(rec[0]), f"{desc}: GRL coefficient actually used")
        S.put(f"{prefix}.loss", loss, f"{desc}: loss value")
        S.put(f"{prefix}.accuracy", torch.as_tensor(loss_fn.domain_discriminator_accuracy),
              f"{desc}: domain_discriminator_accuracy attribute (percent, 0..100)")
        S.put(f"{prefix}.disc_output", io["out"], f"{desc}: discriminator output on cat(f_s, f_t) [16,1] "
              "(sigmoid probabilities, rows 0..7 source, 8..15 target)")
        S.put(f"{prefix}.grad_f_s", fs.grad, f"{desc}: d loss / d f_s (through the GRL, i.e. reversed and scaled)")
        S.put(f"{prefix}.grad_f_t", ft.grad, f"{desc}: d loss / d f_t (through the GRL)")
        S.put(f"{prefix}.grad_disc_0_weight", D[0].weight.grad,
              f"{desc}: d loss / d discriminator first Linear weight ('0.weight', [32,16]); not reversed")
        for name, p in D.named_parameters():
            if name != "0.weight":
                S.put(f"{prefix}.grad_disc.{name}", p.grad, f"{desc}: d loss / d discriminator parameter '{name}'")
        if weighted:
            S.put(f"{prefix}.w_s", w_s, "instance weights for source: torch.linspace(0.5, 1.5, 8)")
            S.put(f"{prefix}.w_t", w_t, "instance weights for target: torch.linspace(1.5, 0.5, 8)")

    run_dann(False, "dann", "DANN DomainAdversarialLoss(disc16 copy, reduction='mean', grl=fixed GRL)")
    run_dann(True, "dann_w", "DANN with w_s, w_t passed to forward")

    # ---------------- c. CDAN
    def run_cdan(disc, prefix: str, desc: str, entropy_conditioning: bool, randomized: bool,
                 reduction: str = "mean", full: bool = True):
        D = copy.deepcopy(disc).train()
        if randomized:
            torch.manual_seed(1)
            loss_fn = CDANLoss(D, entropy_conditioning=entropy_conditioning, randomized=True, num_classes=CLS,
                               features_dim=FEAT, randomized_dim=RDIM, reduction=reduction)
        else:
            loss_fn = CDANLoss(D, entropy_conditioning=entropy_conditioning, randomized=False,
                               reduction=reduction)
        facts["cdan_default_grl"] = (f"{type(loss_fn.grl).__name__}(alpha={loss_fn.grl.alpha}, lo={loss_fn.grl.lo}, "
                                     f"hi={loss_fn.grl.hi}, max_iters={loss_fn.grl.max_iters}, "
                                     f"auto_step={loss_fn.grl.auto_step})")
        loss_fn.grl = fixed_grl()  # constructor takes no grl argument: replaced after construction
        gs, fs, gt, ft = leaf(g_s), leaf(f_s), leaf(g_t), leaf(f_t)
        io: dict = {}
        h = capture_io(D, io)
        rec: list = []
        with spy_grl_coeff(grl_mod, rec):
            loss = loss_fn(gs, fs, gt, ft)
        h.remove()
        if reduction == "none":
            S.put(f"{prefix}.per_sample_loss", loss, f"{desc}: per-sample loss [16,1] (rows 0..7 source)")
            return loss_fn, loss.detach()
        loss.backward()
        S.put(f"{prefix}.grl_coeff", float(rec[0]), f"{desc}: GRL coefficient actually used")
        S.put(f"{prefix}.loss", loss, f"{desc}: loss value")
        S.put(f"{prefix}.accuracy", torch.as_tensor(loss_fn.domain_discriminator_accuracy),
              f"{desc}: domain_discriminator_accuracy attribute (percent, 0..100)")
        S.put(f"{prefix}.disc_input", io["in"], f"{desc}: discriminator input = map(cat(f), softmax(cat(g))) "
              "after the GRL (forward identity), rows 0..7 source")
        S.put(f"{prefix}.disc_output", io["out"], f"{desc}: discriminator output [16,1] (sigmoid probabilities)")
        for nm, t in (("f_s", fs), ("f_t", ft), ("g_s", gs), ("g_t", gt)):
            g, has = grad_or_zeros(t)
            S.put(f"{prefix}.grad_{nm}", g, f"{desc}: d loss / d {nm}" + ("" if has else
                  " -- TLlib produced NO gradient (grad is None: softmax(g) is detached); stored as zeros"))
            facts[f"{prefix}.grad_{nm}_is_None"] = not has
        S.put(f"{prefix}.grad_disc_0_weight", D[0].weight.grad,
              f"{desc}: d loss / d discriminator first Linear weight ('0.weight')")
        return loss_fn, loss.detach()

    run_cdan(disc80, "cdan", "CDAN (entropy_conditioning=False, randomized=False, disc80 copy, fixed GRL)",
             False, False)
    run_cdan(disc80, "cdan_e", "CDAN+E (entropy_conditioning=True, randomized=False, disc80 copy, fixed GRL)",
             True, False)
    lf, _ = run_cdan(disc24, "cdan_rand", "randomized CDAN (entropy_conditioning=False, randomized=True, "
                     "randomized_dim=24, disc24 copy, torch.manual_seed(1) right before the loss constructor)",
                     False, True)
    S.put("cdan_rand.Rf", lf.map.Rf, "RandomizedMultiLinearMap.Rf [16,24]: first torch.randn(16,24) after "
          "torch.manual_seed(1) (not a buffer/parameter: absent from any state_dict)")
    S.put("cdan_rand.Rg", lf.map.Rg, "RandomizedMultiLinearMap.Rg [5,24]: torch.randn(5,24) right after Rf")
    lf2, _ = run_cdan(disc24, "cdan_rand_e", "randomized CDAN+E (entropy_conditioning=True, randomized=True, "
                      "randomized_dim=24, disc24 copy, seed 1 before constructor)", True, True)
    assert torch.equal(lf2.map.Rf, lf.map.Rf) and torch.equal(lf2.map.Rg, lf.map.Rg)
    # per-sample losses (reduction='none') -> the entropy weights TLlib applied, derived from its outputs only
    _, ps_plain = run_cdan(disc80, "cdan_none", "CDAN with reduction='none'", False, False, reduction="none")
    _, ps_e = run_cdan(disc80, "cdan_e_none", "CDAN+E with reduction='none'", True, False, reduction="none")
    S.put("cdan_e.entropy_weight_derived", (ps_e / ps_plain).view(-1),
          "CDAN+E per-sample weights as applied by TLlib, derived as cdan_e_none.per_sample_loss / "
          "cdan_none.per_sample_loss [16] (sums to 16)")

    # ---------------- d. MCC
    for T, prefix in ((2.5, "mcc_t2.5"), (1.0, "mcc_t1.0")):
        gt = leaf(g_t)
        loss = MCCLoss(temperature=T)(gt)
        loss.backward()
        S.put(f"{prefix}.loss", loss, f"MinimumClassConfusionLoss(temperature={T}) on g_t: loss")
        S.put(f"{prefix}.grad_g_t", gt.grad, f"MinimumClassConfusionLoss(temperature={T}): d loss / d g_t")

    # ---------------- sanity checks
    problems = []
    for k, a in S.arrays.items():
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            problems.append(f"{k}: non-finite")
        if ".grad" in k and a.dtype.kind == "f" and not np.any(a) and not facts.get(f"{k}_is_None"):
            problems.append(f"{k}: all zero")
    if not facts["grl_grad_equals_minus_coeff_w_exactly"]:
        problems.append("GRL gradient != -coeff*w")
    facts["sanity_problems"] = problems

    # ---------------- write
    commit = tllib_commit(root, args.commit)
    np.savez(OUT_NPZ, **S.arrays)
    meta = {
        "description": "Reference values computed with thuml/Transfer-Learning-Library (TLlib) on fixed float32 "
                       "tensors, for testing an independent implementation of GRL / DANN / CDAN / MCC.",
        "regenerate": "python tests/domain/data/make_tllib_reference.py /tmp/tllib",
        "tllib_repository": "https://github.com/thuml/Transfer-Learning-Library",
        "tllib_commit": commit,
        "tllib_source_sha256": {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in SOURCE_FILES},
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "device": "cpu",
        "import_shims": loaded["shims"],
        "setup": SETUP,
        "formulas": FORMULAS,
        "surprises": SURPRISES,
        "facts": facts,
        "keys": {k: {"shape": list(a.shape), "dtype": str(a.dtype), "meaning": S.meaning[k]}
                 for k, a in S.arrays.items()},
    }
    OUT_JSON.write_text(json.dumps(meta, indent=2) + "\n")

    print(f"TLlib commit {commit}; torch {torch.__version__}; {len(S.arrays)} arrays -> {OUT_NPZ}")
    for k, a in S.arrays.items():
        if a.size <= 5:
            print(f"  {k:36s} {a.dtype} {list(a.shape)} {np.array2string(a.ravel(), precision=8)}")
        else:
            print(f"  {k:36s} {a.dtype} {list(a.shape)} |max|={np.abs(a).max():.6g}")
    print("facts:", json.dumps(facts, indent=1))
    if problems:
        sys.exit("SANITY PROBLEMS: " + "; ".join(problems))


SETUP = {
    "inputs": "torch.manual_seed(0); f_s = randn(8,16); f_t = randn(8,16); g_s = randn(8,5)*2; g_t = randn(8,5)*2; "
              "disc16 = DomainDiscriminator(16, 32); disc80 = DomainDiscriminator(80, 32) (same RNG stream, in this "
              "order). torch.manual_seed(2); disc24 = DomainDiscriminator(24, 32). All float32, CPU. "
              "Discriminators in train() mode; each loss is computed on a deep copy of the initial discriminator "
              "and on fresh leaf copies of the inputs (requires_grad=True).",
    "discriminator": "DomainDiscriminator(in_feature, hidden_size=32) default variant (batch_norm=True, sigmoid=True): "
                     "Sequential(0: Linear(in,32), 1: BatchNorm1d(32), 2: ReLU, 3: Linear(32,32), 4: BatchNorm1d(32), "
                     "5: ReLU, 6: Sequential(0: Linear(32,1), 1: Sigmoid)). Outputs PROBABILITIES in (0,1), shape "
                     "[B,1]. PyTorch default init (Linear: kaiming-uniform weight / uniform bias; BN: weight 1, "
                     "bias 0, eps 1e-5, momentum 0.1). Parameter names as in state_dict: 0.weight, 0.bias, "
                     "1.weight, 1.bias, 1.running_mean, 1.running_var, 1.num_batches_tracked, 3.*, 4.*, "
                     "6.0.weight, 6.0.bias. In train mode BN uses the statistics of the whole batch it is given, "
                     "which for DANN/CDAN is the concatenation [source; target] of 16 rows (biased variance).",
    "fixed_grl": f"DANN and CDAN use WarmStartGradientReverseLayer(alpha=1, lo=0, hi=1, max_iters=1000, "
                 f"auto_step=False) with iter_num={FIXED_ITER}: coeff = 2/(1+exp(-0.5)) - 1 = tanh(0.25) "
                 f"~= 0.2449186624. DANN gets it via the constructor's grl= argument. CDAN's constructor has no grl "
                 f"argument (it always builds WarmStartGradientReverseLayer(alpha=1, lo=0, hi=1, max_iters=1000, "
                 f"auto_step=True)), so the attribute loss.grl was replaced after construction. "
                 f"(GradientReverseLayer with a fixed coefficient is not usable: its forward(*input) passes only "
                 f"the tensor, so the coefficient is always 1.)",
    "cdan_randomized": "torch.manual_seed(2) -> disc24; torch.manual_seed(1) -> "
                       "ConditionalDomainAdversarialLoss(disc24, randomized=True, num_classes=5, features_dim=16, "
                       "randomized_dim=24), whose RandomizedMultiLinearMap draws Rf = randn(16,24) then Rg = randn(5,24).",
    "mcc": "MinimumClassConfusionLoss(temperature=T)(g_t) for T = 2.5 and T = 1.0.",
}

FORMULAS = {
    "entropy": "H(p) = -sum_c p_c * log(p_c + 1e-5)   (epsilon INSIDE the log; natural log; per row).",
    "grl": "Forward: R(x) = x. Backward: dL/dx = -lambda * dL/dR. lambda = 2(hi-lo)/(1+exp(-alpha*i/N)) - (hi-lo) + "
           "lo, i = iter_num, N = max_iters; for lo=0, hi=1: lambda = tanh(alpha*i/(2N)). Computed in float64, "
           "applied as a python float to the float32 gradient. No clipping at i > N (lambda keeps approaching hi). "
           "With auto_step=True, i is incremented AFTER each forward (the first forward uses i=0, lambda=0).",
    "bce": "PyTorch binary_cross_entropy on probabilities: l(p, y) = -(y*log p + (1-y)*log(1-p)), each log clamped "
           "to >= -100. Weighted form with reduction='mean': mean_i(w_i * l_i) (divides by the count, NOT by sum w).",
    "binary_accuracy": "acc = 100 * (1/B) * #{i : [p_i >= 0.5] == y_i} (percent, float32 tensor).",
    "dann": "f = R(cat(f_s, f_t)) (2N x F); p = D(f) (2N x 1, probabilities; one discriminator call on the joint "
            "batch, so BN statistics mix source and target). p_s = p[:N], p_t = p[N:]. Source label 1, target 0. "
            "loss = 0.5 * ( (1/N) sum_i w_s,i * -log p_s,i + (1/N) sum_j w_t,j * -log(1 - p_t,j) ), with w = 1 "
            "when not given (i.e. 0.5*(BCE_mean(source) + BCE_mean(target))). This is the POSITIVE discriminator "
            "cross-entropy; the feature extractor maximises it only through the GRL. accuracy = "
            "0.5*(binary_accuracy(p_s, 1) + binary_accuracy(p_t, 0)).",
    "cdan_map": "q = softmax(cat(g_s, g_t), dim=1).DETACH() (2N x C); f = cat(f_s, f_t) (2N x F). Multilinear map: "
                "T(f, q)_b = flatten(q_b outer f_b) with index c*F + k -> q_bc * f_bk (class index major), size C*F "
                "= 80. Randomized map: T(f, q) = ((f @ Rf) * (q @ Rg)) / sqrt(d), Rf: F x d, Rg: C x d standard "
                "normal, fixed, d = randomized_dim.",
    "cdan": "p = D(R(T(f, q))) on the joint 2N batch; labels y = 1 for rows 0..N-1 (source), 0 for N..2N-1. "
            "CDAN: loss = (1/(2N)) sum_b l(p_b, y_b) (plain BCE mean over the 2N rows). accuracy = "
            "binary_accuracy(p, y) over all 2N rows. Gradient reaches f_s, f_t only (reversed by R); g_s, g_t get "
            "NO gradient because q is detached (their .grad is None; stored as zeros).",
    "cdan_e": "Entropy conditioning (CDAN+E): u_b = 1 + exp(-H(q_b)) for all 2N rows (q detached, so no gradient), "
              "normalised JOINTLY over source+target: w_b = 2N * u_b / sum_{b'} u_{b'} (mean 1 over the 2N rows). "
              "loss = (1/(2N)) sum_b w_b * l(p_b, y_b) = sum_b u_b l_b / sum_b u_b. Weights are computed even when "
              "entropy_conditioning=False but then unused.",
    "mcc": "q = softmax(g_t / T, dim=1) (B x C). H_b = H(q_b) DETACHED. u_b = 1 + exp(-H_b); w_b = B * u_b / sum u "
           "(the 'batch size' rescaling; any constant factor cancels after the normalisation below, so it does "
           "not change the loss). Class confusion A = (q * w[:,None])^T q (C x C, symmetric: A_jk = sum_b w_b q_bj "
           "q_bk). Normalisation: the code divides A by its row-sum vector with broadcasting, i.e. "
           "Ã_jk = A_jk / s_k with s_k = sum_m A_km (= column sum of column k, by symmetry) -- the paper's category "
           "normalisation (each column sums to 1). loss = (sum_{j,k} Ã_jk - trace(Ã)) / C = (C - sum_j A_jj/s_j)/C "
           "= 1 - (1/C) sum_j A_jj / s_j. (Normalising rows instead of columns gives the identical loss and "
           "gradient, because both totals equal C and the diagonals coincide.) The gradient flows through q in "
           "both factors of A and through the normalisation, not through w.",
}

FORMULAS["tolerances"] = (
    "Gradients of the Linear biases that feed a BatchNorm (keys *.grad_disc.0.bias, *.grad_disc.3.bias) are exactly "
    "zero mathematically (train-mode BN removes the mean); the stored values are float32 rounding noise (~1e-9): "
    "compare them with an absolute tolerance only. A re-implementation written from these notes alone (plain torch "
    "ops, discriminator rebuilt from the saved state_dict) matched every loss and gradient to <= 6e-8 absolute."
)

SURPRISES = [
    "tllib/modules/grl.py calls np.float, removed in NumPy 1.24: WarmStartGradientReverseLayer.forward raises "
    "AttributeError on current NumPy unless np.float is re-added (we set np.float = float).",
    "ConditionalDomainAdversarialLoss has no grl argument (unlike DomainAdversarialLoss): it always uses a "
    "WarmStartGradientReverseLayer(alpha=1, lo=0, hi=1, max_iters=1000, auto_step=True); we replaced .grl.",
    "Default GRL schedule alpha=1, max_iters=1000: lambda(i=N) = tanh(0.5) ~= 0.462, not ~1 as with the DANN "
    "paper's gamma=10 schedule; lambda is not clipped for i > max_iters.",
    "GradientReverseLayer (no warm start) can only be used with coefficient 1 inside DANN/CDAN (its forward passes "
    "only the input tensor to GradientReverseFunction).",
    "The DANN/CDAN docstrings write loss = E log D(f_s) + E log(1 - D(f_t)) (no minus sign); the code returns the "
    "positive BCE (the negative of that expression), and DANN additionally averages the source and target means "
    "with weight 0.5 each.",
    "DANN with instance weights: BCE 'mean' divides by N, not by sum of weights.",
    "CDAN detaches softmax(g) before the multilinear map, so the classifier logits get no adversarial gradient "
    "(as in the original thuml/CDAN code). CDAN+E normalises the entropy weights jointly over the 2N rows to mean 1, "
    "whereas the original thuml/CDAN code (pytorch/loss.py) normalises source and target weights separately "
    "(each domain's weights sum to 1) and lets the entropy receive a reversed gradient (grl_hook); TLlib's "
    "weights carry no gradient.",
    "CDAN computes the entropy weights even when entropy_conditioning=False (unused). Entropy uses log(p + 1e-5).",
    "RandomizedMultiLinearMap's Rf/Rg are plain tensors (not buffers): they are drawn from the global torch RNG at "
    "construction and are not saved in a state_dict.",
    "MCC: the confusion matrix is divided by torch.sum(A, dim=1) via broadcasting, which normalises columns (paper's "
    "formula); since A is symmetric and only the sum and trace are used, row normalisation would give the same "
    "result. The entropy weights are detached and the 'batch size' factor has no effect on the loss.",
    "The discriminator sees source and target in ONE batch (BatchNorm statistics over the concatenation).",
]


if __name__ == "__main__":
    main()
