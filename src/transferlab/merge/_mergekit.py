"""mergekit YAML files as merge recipes: ``transferlab merge --config mergekit.yml`` translates what has an
equivalent (``merge_method`` linear, task_arithmetic, ties, dare_linear, dare_ties; ``base_model``;
``models[].model``; ``models[].parameters`` weight and density; ``parameters`` normalize, lambda, rescale,
int8_mask; ``dtype``, ``tokenizer_source: base``) into transferlab's own recipe, with one note per mapping, and
refuses the rest by its key, saying what transferlab offers instead.

mergekit's semantics (arcee-ai/mergekit, ``merge_methods/linear.py``, ``generalized_task_arithmetic.py`` and
``registry.py``): ``linear`` is ``sum_t w_t theta_t`` (``/ sum_t w_t`` with ``normalize``, its default); the task
arithmetic family is ``base + lambda * mix`` where ``mix`` sums the weighted task vectors ``w_t tau_t`` (after
sparsification: ``density``; ties with a sign election and only the agreeing entries), divided by the sum of the
(agreeing) weights under ``normalize`` (default true for ties, false otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TransferlabError

#: mergekit methods that have no equivalent here, and what to use instead
INSTEAD = {
    "slerp": "spherical interpolation has no equivalent: use linear weights (method linear) or task_arithmetic",
    "nuslerp": "spherical interpolation has no equivalent: use linear weights (method linear) or task_arithmetic",
    "multislerp": "spherical interpolation has no equivalent: use linear weights (method linear)",
    "karcher": "the Riemannian mean has no equivalent: use average or linear",
    "passthrough": "layer stacking has no equivalent: transferlab merges models of one architecture tensor by tensor",
    "model_stock": "no equivalent: use average, ties or iso (transferlab merge --list)",
    "breadcrumbs": "outlier trimming has no equivalent: use ties (magnitude trimming) or dare",
    "breadcrumbs_ties": "outlier trimming has no equivalent: use ties (magnitude trimming) or dare with ties",
    "della": "magnitude-ranked sampling has no equivalent: use dare with ties (uniform sampling) or ties",
    "della_linear": "magnitude-ranked sampling has no equivalent: use dare (uniform sampling)",
    "sce": "variance selection has no equivalent: use ties, tsv or iso",
}
SCHEMES = ("builtin:", "timm:", "hf:", "st:", "onnx:")
#: top-level keys refused, with what transferlab does instead
REFUSED_KEYS = {
    "slices": "layer slices (stacking or per-range merges) have no equivalent: transferlab merges whole models of "
              "one architecture; give models[] instead",
    "modules": "per-module merges have no equivalent: transferlab merges whole models with one method",
    "chat_template": "no equivalent: the base's chat template files are copied into the output",
    "tokenizer": "no equivalent: the base's tokenizer files are copied into the output (tokenizer_source: base)",
}
GLOBAL_PARAMS = {"linear": {"normalize"}, "task_arithmetic": {"normalize", "lambda", "int8_mask"},
                 "ties": {"normalize", "lambda", "int8_mask"},
                 "dare_linear": {"normalize", "lambda", "int8_mask", "rescale"},
                 "dare_ties": {"normalize", "lambda", "int8_mask", "rescale"}}
DEFAULT_NORMALIZE = {"linear": True, "task_arithmetic": False, "ties": True, "dare_linear": False, "dare_ties": False}
MODEL_PARAMS = {"linear": {"weight"}}  # the others: weight and density


def is_mergekit(raw: Any) -> bool:
    """Whether a YAML document is a mergekit configuration (it has ``merge_method``)."""
    return isinstance(raw, dict) and "merge_method" in raw


def _refuse(key: str, why: str) -> TransferlabError:
    return TransferlabError(f"mergekit {key}: {why}")


def _scalar(key: str, v: Any) -> Any:
    if isinstance(v, list):
        raise _refuse(key, f"{v!r} is a gradient (one value per layer range): no equivalent, transferlab uses one "
                           "value for the whole model; give a single number")
    if isinstance(v, dict):
        raise _refuse(key, f"{v!r} is a per-tensor filter: no equivalent, transferlab uses one value for the whole "
                           "model; give a single number")
    return v


def _reference(key: str, ref: Any, where: Path) -> str:
    """A mergekit model reference as a transferlab one: a local path (relative: to the file) or a transferlab
    reference; Hub names and ``model+lora`` are refused (transferlab reads local folders)."""
    if isinstance(ref, dict):
        raise _refuse(key, f"{ref!r}: structured references (lora, override_architecture) have no equivalent: give "
                           "a local path (a LoRA directory is a model of its own for transferlab)")
    ref = str(ref)
    if ref.startswith(SCHEMES):
        return ref
    p = Path(ref).expanduser()
    if (p if p.is_absolute() else where / p).exists():
        return ref
    if "+" in ref:
        raise _refuse(key, f"{ref!r}: the model+lora syntax has no equivalent: give the LoRA directory itself "
                           "as a model (transferlab merges its B @ A update)")
    raise _refuse(key, f"{ref!r} is not a local path (relative paths: to the file): download it first (e.g. "
                       f"`huggingface-cli download {ref} --local-dir DIR`) and give the folder")


def _top_level(raw: dict[str, Any], notes: list[str]) -> None:
    known = {"merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source"}
    for key, v in raw.items():
        if key in REFUSED_KEYS:
            raise _refuse(key, REFUSED_KEYS[key])
        if key not in known:
            raise _refuse(key, f"unknown or unsupported key (translated: {', '.join(sorted(known))})")
        if key in ("dtype", "out_dtype") and v is not None:
            notes.append(f"{key}: {v} -> not applied: the output keeps the models' dtype")
    src = raw.get("tokenizer_source")
    if src not in (None, "base"):
        raise _refuse("tokenizer_source", f"{src!r} has no equivalent: the base's tokenizer files are copied into "
                                          "the output (tokenizer_source: base)")
    if src == "base":
        notes.append("tokenizer_source: base -> the base's tokenizer files are copied (transferlab's default)")


def _model_entries(raw: dict[str, Any], method: str, base: str | None, params: dict[str, Any], where: Path,
                   notes: list[str]) -> list[dict[str, Any]]:
    """``models[]`` as ``{"path", "weight", "density"}`` (per-model values over the top-level ``parameters``); the
    base model is left out of the task-vector methods (mergekit skips it: its task vector is zero)."""
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise _refuse("models", "a list of {model: PATH, parameters: {weight, density}} is required")
    allowed = MODEL_PARAMS.get(method, {"weight", "density"})
    out: list[dict[str, Any]] = []
    for i, m in enumerate(models):
        at = f"models[{i}]"
        if isinstance(m, str):
            m = {"model": m}
        if not isinstance(m, dict) or "model" not in m:
            raise _refuse(at, "each model is {model: PATH, parameters: {...}}")
        extra = set(m) - {"model", "parameters"}
        if extra:
            raise _refuse(f"{at}.{sorted(extra)[0]}", "no equivalent (a model has model and parameters)")
        mp = m.get("parameters") or {}
        for k in mp:
            if k not in allowed:
                raise _refuse(f"{at}.parameters.{k}", f"no equivalent for {method} (translated: "
                                                      f"{', '.join(sorted(allowed))})")
        if base is not None and m["model"] == base and method != "linear":
            notes.append(f"{at}.model: {m['model']} is the base_model -> left out of models (its task vector is "
                         "zero; mergekit skips it too)")
            continue
        e = {"path": _reference(f"{at}.model", m["model"], where)}
        for k in allowed:
            v = _scalar(f"{at}.parameters.{k}", mp.get(k, params.get(k)))
            e[k] = 1.0 if v is None else float(v)  # mergekit's defaults: density 1; weight (required there) 1
        e["at"] = at
        out.append(e)
    return out


def _same(entries: list[dict[str, Any]], key: str, method: str, instead: str) -> float:
    """The one value every model has for ``key``; differing values are refused by the first one that differs."""
    first = entries[0][key]
    for e in entries[1:]:
        if e[key] != first:
            raise _refuse(f"{e['at']}.parameters.{key}", f"{e[key]} differs from {entries[0]['at']}'s {first}: "
                                                         f"{method} here has one {key} for every model; {instead}")
    return first


def from_mergekit(raw: dict[str, Any], where: Path) -> tuple[dict[str, Any], list[str]]:
    """A mergekit configuration as a transferlab recipe document (``MergeRecipe`` fields; paths as written,
    relative to ``where``) and the notes that say what became what. Raises on what has no equivalent, by key."""
    notes: list[str] = []
    method = raw.get("merge_method")
    if method in INSTEAD:
        raise _refuse(f"merge_method: {method}", INSTEAD[method])
    if method not in GLOBAL_PARAMS:
        raise _refuse(f"merge_method: {method}", f"no equivalent (translated: {', '.join(GLOBAL_PARAMS)}; "
                                                 "transferlab's methods: transferlab merge --list)")
    _top_level(raw, notes)
    params = dict(raw.get("parameters") or {})
    per_model = {"weight", "density"}
    for k, v in params.items():
        if k not in GLOBAL_PARAMS[method] | per_model:
            raise _refuse(f"parameters.{k}", f"no equivalent for {method} (translated: "
                                             f"{', '.join(sorted(GLOBAL_PARAMS[method] | per_model))})")
        _scalar(f"parameters.{k}", v)
    base = raw.get("base_model")
    base_ref = None if base is None else _reference("base_model", base, where)
    entries = _model_entries(raw, method, base, params, where, notes)
    if base_ref is None:
        if method != "linear":
            raise _refuse("base_model", f"{method} needs the model the others were fine-tuned from")
        base_ref = entries[0]["path"]
        notes.append(f"base_model: (none) -> base: {base_ref} (the first model: a weighted average does not depend "
                     "on the base, which only names the architecture)")
    else:
        notes.append(f"base_model: {base} -> base: {base_ref}")
    if params.get("int8_mask") is not None:
        notes.append(f"parameters.int8_mask: {params['int8_mask']} -> ignored (mergekit's memory option; no effect "
                     "on the result)")
    normalize = bool(params.get("normalize", DEFAULT_NORMALIZE[method]))
    lam = float(params.get("lambda", 1.0))
    mapped = {"linear": _linear, "task_arithmetic": _task_arithmetic, "ties": _ties,
              "dare_linear": _dare, "dare_ties": _dare}[method](method, entries, normalize, lam, params, notes)
    ours, options, weighted = mapped
    models = [{"path": e["path"], **({"weight": e["weight"]} if weighted else {})} for e in entries]
    notes.append("models[].model -> models[].path: " + ", ".join(e["path"] for e in entries))
    return {"method": ours, "base": base_ref, "models": models, "options": options}, notes


Mapped = tuple[str, dict[str, Any], bool]  # our method, its options, whether the models carry their weights


def _linear(method: str, entries: list[dict[str, Any]], normalize: bool, lam: float, params: dict[str, Any],
            notes: list[str]) -> Mapped:
    ws = [e["weight"] for e in entries]
    if not normalize and abs(sum(ws) - 1) > 1e-12:
        raise _refuse("parameters.normalize: false", f"mergekit's linear then sums the weighted models (sum of "
                                                     f"weights {sum(ws):g}, not 1): no equivalent; transferlab's "
                                                     "linear divides by the sum of the weights (normalize: true)")
    if len(set(ws)) == 1:
        notes.append(f"merge_method: linear, weight {ws[0]:g} on every model -> method: average (the mean)")
        return "average", {}, False
    notes.append(f"merge_method: linear, models[].parameters.weight {ws} -> method: linear, models[].weight "
                 "(the weighted average sum_t w_t theta_t / sum_t w_t)")
    return "linear", {"normalize": True, "lam": 1.0}, True


def _task_arithmetic(method: str, entries: list[dict[str, Any]], normalize: bool, lam: float,
                     params: dict[str, Any], notes: list[str]) -> Mapped:
    ws, t = [e["weight"] for e in entries], len(entries)
    if len(set(ws)) == 1:
        scale = lam / t if normalize else lam * ws[0]
        how = f"lambda {lam:g} / {t} models (normalize: true)" if normalize else f"lambda {lam:g} x weight {ws[0]:g}"
        notes.append(f"merge_method: task_arithmetic, weight {ws[0]:g} on every model -> method: task_arithmetic, "
                     f"lam: {scale:g} ({how})")
        return "task_arithmetic", {"lam": scale}, False
    notes.append(f"merge_method: task_arithmetic, models[].parameters.weight {ws} -> method: linear, "
                 f"models[].weight, normalize: {str(normalize).lower()}, lam: {lam:g} (base + lam * sum_t w_t tau_t"
                 f"{' / sum_t w_t' if normalize else ''})")
    return "linear", {"normalize": normalize, "lam": lam}, True


def _ties(method: str, entries: list[dict[str, Any]], normalize: bool, lam: float, params: dict[str, Any],
          notes: list[str]) -> Mapped:
    if not normalize:
        raise _refuse("parameters.normalize: false", "mergekit's ties then sums the agreeing entries; transferlab's "
                                                     "ties takes their mean (normalize: true): no equivalent")
    w = _same(entries, "weight", method, "give every model the same weight (it cancels under normalize)")
    if w == 0:
        raise _refuse(f"{entries[0]['at']}.parameters.weight", "0 on every model leaves the base unchanged")
    density = _same(entries, "density", method, "give every model the same density")
    notes.append("merge_method: ties -> method: ties, scope: tensor (mergekit trims each tensor; it keeps exactly "
                 "int(density * n) entries, transferlab one more and any tied with the threshold; an exactly zero "
                 "sign sum is + there, the model-wide majority here)")
    notes.append(f"models[].parameters.density: {density:g} -> options.density: {density:g}")
    notes.append(f"models[].parameters.weight: {w:g} on every model -> cancels in the disjoint mean "
                 f"(normalize: true); parameters.lambda: {lam:g} -> options.lam: {lam:g}")
    return "ties", {"density": density, "lam": lam, "scope": "tensor", "sign": "mass"}, False


def _dare(method: str, entries: list[dict[str, Any]], normalize: bool, lam: float, params: dict[str, Any],
          notes: list[str]) -> Mapped:
    ties = method == "dare_ties"
    if not params.get("rescale", True):
        raise _refuse("parameters.rescale: false", "transferlab's dare always rescales the survivors by 1/density: "
                                                   "no equivalent without rescaling")
    if ties and not normalize:
        raise _refuse("parameters.normalize: false", "mergekit's dare_ties then sums the agreeing entries; "
                                                     "transferlab's dare with ties takes their mean (normalize: true):"
                                                     " no equivalent")
    w = _same(entries, "weight", method, "give every model the same weight")
    density = _same(entries, "density", method, "give every model the same density")
    t = len(entries)
    scale = lam if ties else (lam / t if normalize else lam * w)
    how = ("weight cancels in the disjoint mean" if ties else
           f"lambda {lam:g} / {t} models (normalize: true)" if normalize else f"lambda {lam:g} x weight {w:g}")
    notes.append(f"merge_method: {method} -> method: dare{', ties: true' if ties else ''}, lam: {scale:g} ({how})")
    notes.append(f"models[].parameters.density: {density:g} -> options.p: {1 - density:g} (the drop rate; the random "
                 "masks differ from mergekit's)")
    return "dare", {"p": 1 - density, "lam": scale, "ties": ties, "seed": 0}, False
