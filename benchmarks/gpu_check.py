"""The GPU check: every capability once on a device, each compared with the CPU, with timings.

    .venv/bin/python benchmarks/gpu_check.py --device cuda            # on a GPU machine: aims at ~1 minute
    .venv/bin/python benchmarks/gpu_check.py --device cuda --full     # 400 examples, 2 epochs: <= 8 minutes
    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny      # the shrunk form the test suite runs

Steps: rank (feature extraction at 224 px in fp32 and bf16, LogME and kNN), fit (finetune, lora), domain (dann),
distill (kd), continual (naive), merge (regmean, data-dependent), and the short cases of issue 34's methods and of
rank's pipeline: ``pipeline`` (rank of two models, the metrics of one in rank's worker thread while the next
extracts, against the CPU in sequence), ``blackvip`` (SPSA-GC through the black box's queries, fp32: SPSA's finite
differences are below bf16's resolution), ``petal`` and ``sla`` (label augmentation with the single head), both
under bf16 autocast on the device (AMP). Each runs on ``--device`` and on the CPU with the same seed and data; the
check asserts that every parameter and buffer of every trained module ended on the device, that results agree within
the stated tolerances (float summation order differs between devices, and training amplifies it: an accuracy may
move by a few test examples), and prints a Markdown table of the timings (device vs CPU). In the short cases a spy on
every module's forward (all threads) also fails the step when a forward ran on another device (a one-example shape
probe excepted) or when none ran on the device. ``--tiny``: a tiny random timm network, 32 px and a few dozen
examples (seconds, for the suite). ``--json`` keeps the rows. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: agreement between the device and the CPU: (what is compared, absolute tolerance)
TOLERANCES = {
    "rank fp32": ("LogME scores", 1e-3),  # fp32 features agree to ~1e-6 relative; LogME is smooth in them
    "rank bf16": ("LogME scores", 0.15),  # bf16 features differ by up to 1e-1 relative (docs/benchmarks.md)
    "fit finetune": ("test accuracy", 0.05),
    "fit lora": ("test accuracy", 0.05),
    "domain dann": ("oracle target accuracy", 0.08),
    "distill kd": ("test accuracy", 0.05),
    "continual naive": ("ACC", 0.08),
    "merge regmean": ("merged tensors (sum; max difference)", 1e-3),
    "rank pipelined": ("LogME + kNN, pipelined vs in sequence", 1e-3),
    "fit blackvip": ("test accuracy", 0.08),  # a few dozen SPSA steps: the perturbations' draws differ by device
    "fit petal": ("test accuracy", 0.08),  # its rows are named by the precision: fit petal bf16
    "fit sla": ("single-head test accuracy", 0.08),
}
#: the precision of the AMP steps' device role (on a CPU device fp32: the suite's run stays short)
AMP = "bf16"


def _on_device(modules: Any, dev: Any) -> list[str]:
    """Names of the parameters and buffers not on ``dev``."""
    mods = modules.items() if isinstance(modules, dict) else [("model", modules)]
    off = []
    for name, m in mods:
        for what, t in [*m.named_parameters(), *m.named_buffers()]:
            if t.device.type != dev.type or (dev.index is not None and t.device.index != dev.index):
                off.append(f"{name}.{what} on {t.device}")
    return off


def _same_device(t: Any, dev: Any) -> bool:
    return t.type == dev.type and (dev.index is None or t.index in (None, dev.index))


def _tensors(obj: Any) -> list[Any]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    return [t for o in obj for t in _tensors(o)] if isinstance(obj, (list, tuple)) else []


class ForwardSpy:
    """While active: every module forward in any thread (a global forward pre-hook); ``off`` lists the forwards
    whose inputs lay on another device than ``dev`` (inputs of more than one example: a one-example shape probe,
    e.g. a coordinator sizing its encoder, may run on the CPU), ``on`` counts those on ``dev``."""

    def __init__(self, dev: Any) -> None:
        self.dev, self.off, self.on = dev, [], 0

    def __enter__(self) -> ForwardSpy:
        import torch

        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()

    def _hook(self, module: Any, args: Any) -> None:
        ts = _tensors(args)
        wrong = [t for t in ts if not _same_device(t.device, self.dev) and t.dim() > 0 and t.shape[0] > 1]
        if wrong:
            what = f"{type(module).__name__} forward on {wrong[0].device}"
            if what not in self.off:
                self.off.append(what)
        elif any(_same_device(t.device, self.dev) for t in ts):
            self.on += 1

    def problems(self) -> list[str]:
        return self.off + ([] if self.on else [f"no module forward ran on {self.dev}"])


class Check:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.rows: list[dict[str, Any]] = []
        tiny = args.tiny
        self.model = args.model or (self._tiny_model() if tiny else "builtin:efficientnet_lite0")
        self.size = 32 if tiny else 224
        self.limit = 60 if tiny else 400 if args.full else 200
        self.epochs = 2 if args.full and not tiny else 1

    def _tiny_model(self) -> str:
        import timm
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        net = timm.create_model("test_efficientnet", pretrained=False)
        path = self.work / "tiny.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        return f"timm:test_efficientnet@{path}"

    def run(self, name: str, fn: Callable[[str, str], tuple[float, Any]], precision: str = "fp32",
            spy: bool = False) -> None:
        """``fn(device, tag) -> (figure, modules or None)`` on the device and on the CPU; compare and time.
        ``spy``: every module forward of the device's run must run on the device (:class:`ForwardSpy`)."""
        import contextlib

        from transferlab._runtime import resolve_device, runtime

        dev = resolve_device(self.args.device)
        out, watch = {}, ForwardSpy(dev)
        for role, where in (("device", self.args.device), ("cpu", "cpu")):
            with runtime(device=where, precision=precision if role == "device" else "fp32"), \
                    (watch if spy and role == "device" else contextlib.nullcontext()):
                t0 = time.perf_counter()
                figure, modules = fn(where, f"{name.replace(' ', '-')}-{role}")
                out[role] = (figure, time.perf_counter() - t0, modules)
        what, tol = TOLERANCES[name] if name in TOLERANCES else TOLERANCES[name.rsplit(" ", 1)[0]]
        fd, td, mods = out["device"]
        fc, tc, _ = out["cpu"]
        if isinstance(fd, dict):  # tensors: the largest difference, and their sums for the table
            diff = float(max((fd[k].double() - fc[k].double()).abs().max() for k in fd if fd[k].is_floating_point()))
            fd, fc = (float(sum(float(v.double().sum()) for v in t.values() if v.is_floating_point())) for t in (fd, fc))
        else:
            diff = abs(fd - fc)
        off = (_on_device(mods, dev) if mods is not None else []) + (watch.problems() if spy else [])
        ok = diff <= tol and not off
        self.rows.append({"step": name, "compared": what, "device": round(fd, 4) if isinstance(fd, float) else fd,
                          "cpu": round(fc, 4) if isinstance(fc, float) else fc, "difference": diff, "tolerance": tol,
                          "device_seconds": td, "cpu_seconds": tc, "off_device": off[:3], "ok": ok})
        print(f"{name}: {'ok' if ok else 'FAILED'} ({what} {fd} vs {fc}; {td:.1f} s vs {tc:.1f} s on the CPU)"
              + (f"; not on the device: {off[:3]}" if off else ""), flush=True)

    # ------------------------------------------------------------------------------------------------ the steps
    def rank(self, precision: str) -> None:
        from transferlab.rank import rank

        zoo = [self.model] if self.args.tiny else ["builtin:efficientnet_lite0", "builtin:small_convnext_fashion",
                                                    "builtin:small_resnet_shapes"]

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = rank("builtin:digits", zoo, ["logme", "knn"], image_size=self.size, limit=self.limit,
                     cache_dir=self.work / f"cache-{tag}")
            return float(sum(m.scores["logme"] for m in r.models)), None

        self.run(f"rank {precision}", fn, precision)

    def fit(self, method: str) -> None:
        from transferlab.fit import fit

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = fit(self._data(), self.model, method, test=self._data("test"), epochs=self.epochs,
                    image_size=self.size, seed=0)
            return float(r.metrics["test_accuracy"]), r.model

        self.run(f"fit {method}", fn)

    def domain(self) -> None:
        from transferlab.domain import adapt

        def fn(device: str, tag: str) -> tuple[float, Any]:
            src = self._data()
            tgt = self._data(ref="builtin:digits-m")
            r = adapt(src, tgt, self.model, "dann", target_test=self._data("test", "builtin:digits-m"),
                      epochs=self.epochs, image_size=self.size, batch_size=16, seed=0)
            return float(r.metrics["target_accuracy_oracle"] or 0.0), r.model

        self.run("domain dann", fn)

    def distill(self) -> None:
        from transferlab.distill import distill

        teacher = self._teacher()

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = distill(self._data(), [teacher], self.model, "kd", test=self._data("test"), epochs=self.epochs,
                        image_size=self.size, seed=0)
            return float(r.metrics["test_accuracy"]), r.model

        self.run("distill kd", fn)

    def continual(self) -> None:
        from transferlab.continual import run

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = run(None, self.model, "naive", split="builtin:digits:2", epochs=self.epochs, image_size=self.size,
                    limit=self.limit, test_limit=self.limit, seed=0)
            return float(r.metrics["acc"]), r.modules

        self.run("continual naive", fn)

    def merge(self) -> None:
        from safetensors.torch import load_file

        from transferlab.fit import fit
        from transferlab.merge import merge_models

        fits = []
        for i, ref in enumerate(("builtin:digits", "builtin:digits-m")):
            d = self.work / f"merge-fit{i}"
            if not d.exists():
                fit(self._data(ref=ref), self.model, "finetune", epochs=1, image_size=self.size, out=d, seed=i,
                    device="cpu")
            fits.append(d)
        base = self.model

        def fn(device: str, tag: str) -> tuple[Any, Any]:
            out = self.work / tag
            merge_models("regmean", base, fits, out, data=[self._data(), self._data(ref="builtin:digits-m")],
                         overwrite=True)
            return load_file(str(out / "model.safetensors")), None

        self.run("merge regmean", fn)

    def _teacher(self) -> Path:
        """A finetuned classifier of the digits (on the CPU, once): distill's teacher and blackvip's black box."""
        from transferlab.fit import fit

        teacher = self.work / "teacher"
        if not teacher.exists():
            fit(self._data(), self.model, "finetune", epochs=self.epochs, image_size=self.size, out=teacher,
                device="cpu")
        return teacher

    # ------------------------------------------------------------- the short cases (issue 34, rank's pipeline)
    def pipeline(self) -> None:
        """rank of two models: on the device pipelined (the first model's metrics in rank's worker thread while the
        second extracts), on the CPU in sequence (``threads=1``); every extraction forward on the device."""
        from transferlab.rank import rank

        zoo = [self.model, self._second_model()]

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = rank("builtin:digits", zoo, ["logme", "knn"], image_size=self.size, limit=self.limit // 2,
                     cache_dir=self.work / f"cache-{tag}", threads=None if tag.endswith("-device") else 1)
            return float(sum(m.scores["logme"] + m.scores["knn"] for m in r.models)), None

        self.run("rank pipelined", fn, spy=True)

    def _second_model(self) -> str:
        if not self.args.tiny:
            return "builtin:small_resnet_shapes"
        import timm
        import torch
        from safetensors.torch import save_file

        path = self.work / "tiny2.safetensors"
        if not path.exists():
            torch.manual_seed(1)
            net = timm.create_model("test_resnet", pretrained=False)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        return f"timm:test_resnet@{path}"

    def blackvip(self) -> None:
        """BlackVIP (SPSA-GC) in front of a fitted classifier, queried only: the black box, the coordinator and
        its perturbations on the device; fp32."""
        from transferlab.fit import fit

        black_box = self._teacher()

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = fit(self._data(), self.model, "blackvip", test=self._data("test"), epochs=self.epochs,
                    image_size=self.size, seed=0, init=black_box, sp_avg=2, lr=1e-3, val_fraction=0)
            return float(r.metrics["test_accuracy"]), r.model

        self.run("fit blackvip", fn, spy=True)

    def _amp(self) -> str:
        return AMP if self.args.device != "cpu" else "fp32"

    def petal(self) -> None:
        """PETALface (two LoRA sets mixed by the quality proxy) under AMP."""
        from transferlab.fit import fit

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = fit(self._data(), self.model, "petal", test=self._data("test"), epochs=self.epochs,
                    image_size=self.size, seed=0)
            return float(r.metrics["test_accuracy"]), r.model

        self.run(f"fit petal {self._amp()}", fn, self._amp(), spy=True)

    def sla(self) -> None:
        """Label augmentation (finetune on 4 rotations) and its self-distilled single head, under AMP."""
        from transferlab.fit import fit_label_augmented

        train = self._data().stratified_sample(self.limit // 2, seed=0)  # x 4 rotations

        def fn(device: str, tag: str) -> tuple[float, Any]:
            r = fit_label_augmented(train, self.model, "finetune", test=self._data("test"), head="single",
                                    epochs=self.epochs, image_size=self.size, seed=0)
            return float(r.metrics["single_head_accuracy"]), r.model

        self.run(f"fit sla {self._amp()}", fn, self._amp(), spy=True)

    def _data(self, split: str = "train", ref: str = "builtin:digits") -> Any:
        from transferlab.data import load_dataset

        return load_dataset(ref, split).stratified_sample(self.limit if split == "train" else self.limit // 2,
                                                          seed=0)

    def table(self) -> str:
        lines = ["| step | compared | device | CPU | tolerance | device s | CPU s | CPU / device | ok |",
                 "|:---|:---|---:|---:|---:|---:|---:|---:|:---|"]
        for r in self.rows:
            ratio = r["cpu_seconds"] / r["device_seconds"] if r["device_seconds"] > 0 else float("nan")
            lines.append(f"| {r['step']} | {r['compared']} | {r['device']} | {r['cpu']} | {r['tolerance']:g} | "
                         f"{r['device_seconds']:.1f} | {r['cpu_seconds']:.1f} | {ratio:.1f}× | "
                         f"{'yes' if r['ok'] else 'NO'} |")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="the device to check (cuda, cuda:N, mps, cpu)")
    ap.add_argument("--tiny", action="store_true", help="a tiny network, 32 px, a few dozen examples")
    ap.add_argument("--full", action="store_true", help="400 training examples and 2 epochs a step (default: 200, 1; "
                    "the whole check aims at about a minute on one GPU, its CPU references included)")
    ap.add_argument("--model", default=None, help="the model every step uses (default: EfficientNet-Lite0)")
    ap.add_argument("--steps", default="rank,fit,domain,distill,continual,merge,pipeline,blackvip,petal,sla")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from transferlab._runtime import resolve_device

    resolve_device(args.device)  # a missing device: one clear error before any work
    with tempfile.TemporaryDirectory() as tmp:
        check = Check(args, Path(tmp))
        steps = {s.strip() for s in args.steps.split(",")}
        t0 = time.perf_counter()
        if "rank" in steps:
            check.rank("fp32")
            if args.device != "cpu":
                check.rank("bf16")
        if "fit" in steps:
            check.fit("finetune")
            check.fit("lora")
        for name in ("domain", "distill", "continual", "merge", "pipeline", "blackvip", "petal", "sla"):
            if name in steps:
                getattr(check, name)()
        print(f"\n{check.table()}\n\ndevice {args.device}, {time.perf_counter() - t0:.0f} s in all", flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(check.rows, indent=2, default=str) + "\n")
        return 0 if all(r["ok"] for r in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
