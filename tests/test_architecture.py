"""The house's layering, enforced: every import in src/transferlab (function-local ones included) is read; no cycle
between modules, no import against the layers, a public API of public names, no oversized module without a reason."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "transferlab"

#: errors, _io, _registry -> data -> zoo -> models -> report -> train -> capabilities -> bench -> cli
LAYERS = {
    "errors": 0, "_io": 0, "_runtime": 0, "_registry": 0, "_version": 0, "_progress": 0, "_published": 0,
    "data": 1,
    "zoo": 2,
    "models": 3,
    "report": 4,
    "train": 5,
    "rank": 6, "fit": 6, "merge": 6, "domain": 6, "distill": 6, "continual": 6, "prune": 6, "pretrain": 6,
    "bench": 7, "auto": 7,
    "cli": 8,
    "__init__": 9, "__main__": 9,
}
CAPABILITY = 6
MAX_LINES = 400  # a longer module states why in a "# size:" comment


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str) -> set[str]:
    """Every transferlab module ``module`` imports, at any depth of its code."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module)
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.add(sub if sub in MODULES else target)
    out = set()
    for f in found:
        if not f.startswith("transferlab"):
            continue
        while f and f not in MODULES:  # `import transferlab.x.y.z` where z is an attribute
            f = f.rpartition(".")[0]
        if f and f != module:
            out.add(f)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def layer_of(module: str) -> tuple[int, str]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        pytest.fail(f"{module}: package {top!r} has no layer; add it to LAYERS in tests/test_architecture.py")
    return LAYERS[top], top


def test_every_module_is_read():
    assert len(MODULES) > 50 and "transferlab.train._loop" in MODULES and "transferlab.models" in MODULES


def test_the_reader_sees_function_local_and_relative_imports(tmp_path):
    # transferlab/fit/_api.py imports transferlab.train inside a function, relatively
    assert "transferlab.train" in GRAPH["transferlab.fit._api"]
    assert "transferlab.errors" in GRAPH["transferlab._registry"]


def imports_against_the_layers() -> list[str]:
    bad = []
    for m, deps in GRAPH.items():
        lm, top_m = layer_of(m)
        for d in deps:
            ld, top_d = layer_of(d)
            if ld > lm:
                bad.append(f"{m} (layer {top_m}) imports {d} (layer {top_d}, above)")
            elif ld == lm == CAPABILITY and top_d != top_m and d != f"transferlab.{top_d}":
                # a sibling's public API (its package: transferlab.rank.score) is allowed, never its internals
                bad.append(f"{m} imports {d}: capabilities do not import each other's internals (share through "
                           "models/train, or use the sibling's public API)")
    return sorted(bad)


def test_no_import_against_the_layers():
    bad = imports_against_the_layers()
    assert not bad, "\n".join(bad)


def private_imports_across_packages() -> list[str]:
    """``A.x imports B._y`` with A and B different packages: B's internals, reached past its public API."""
    bad = []
    for m, deps in GRAPH.items():
        top_m = m.split(".")[1] if m.count(".") else ""
        for d in deps:
            parts = d.split(".")
            if len(parts) >= 3 and parts[1] != top_m and any(p.startswith("_") for p in parts[2:]):
                bad.append(f"{m} imports {d}")
    return sorted(bad)


def test_no_package_reaches_into_another_packages_private_modules():
    bad = private_imports_across_packages()
    assert not bad, ("import the name from the package (export it in its __init__) instead of its private "
                     "module:\n" + "\n".join(bad))


def test_the_private_import_check_sees_one(monkeypatch):
    monkeypatch.setitem(GRAPH, "transferlab.bench._rank", GRAPH["transferlab.bench._rank"] | {"transferlab.zoo._cache"})
    assert private_imports_across_packages() == ["transferlab.bench._rank imports transferlab.zoo._cache"]


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return cycles


def test_no_cycle_between_modules():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_catches_a_cycle_and_an_upward_import(monkeypatch):
    fake = dict(GRAPH)
    fake["transferlab.zoo._sources"] = GRAPH["transferlab.zoo._sources"] | {"transferlab.fit"}
    monkeypatch.setattr(f"{__name__}.GRAPH", fake)
    with pytest.raises(AssertionError, match="imports transferlab.fit"):
        test_no_import_against_the_layers()
    fake["transferlab.data._dataset"] = GRAPH["transferlab.data._dataset"] | {"transferlab.zoo._sources"}
    fake["transferlab.zoo._sources"] = GRAPH["transferlab.zoo._sources"] | {"transferlab.data._dataset"}
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_cycle_between_modules()


PUBLIC = {
    "transferlab.rank": {"rank", "score", "list_metrics"},
    "transferlab.fit": {"fit", "list_methods"},
    "transferlab.merge": {"merge", "merge_models", "list_methods"},
    "transferlab.models": {"load", "predict", "evaluate"},
    "transferlab.train": {"train", "Objective", "TrainConfig"},
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_api_holds_public_names(package):
    mod = importlib.import_module(package)
    names = set(mod.__all__)
    assert PUBLIC[package] <= names
    assert not [n for n in names if n.startswith("_")]
    assert all(hasattr(mod, n) for n in names)


def oversized_modules() -> list[str]:
    big = []
    for m, p in MODULES.items():
        text = p.read_text()
        if text.count("\n") > MAX_LINES and "# size:" not in text:
            big.append(f"{m}: {text.count(chr(10))} lines")
    return big


def test_no_oversized_module_without_a_reason():
    big = oversized_modules()
    assert not big, "modules over 400 lines (split them, or say why in a '# size:' comment):\n" + "\n".join(big)


MAX_FUNCTION_LINES = 80  # outside the CLI, whose commands are long lists of typer options


def long_functions() -> list[str]:
    """Functions (def line to last line, docstring included) over MAX_FUNCTION_LINES, outside transferlab.cli."""
    out = []
    for m, p in MODULES.items():
        if m.startswith("transferlab.cli"):
            continue
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{m}.{node.name}: {n} lines")
    return sorted(out)


def test_no_long_function_outside_the_cli():
    long = long_functions()
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(long)


MAX_PRIVATE_PARAMETERS = 8  # a private step taking more is threading a run's arguments: group them (a settings object)
#: none left: every private step over the limit was regrouped (issue 27)
_REGROUPING: set[str] = set()


def private_functions_with_many_parameters() -> list[str]:
    """Private functions (``_name``, methods' ``self``/``cls`` not counted) outside transferlab.cli taking more than
    MAX_PRIVATE_PARAMETERS parameters (``*args``/``**kwargs`` not counted)."""
    out = []
    for m, p in MODULES.items():
        if m.startswith("transferlab.cli"):
            continue
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_") \
                    and not node.name.startswith("__"):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                n = len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)
                if n > MAX_PRIVATE_PARAMETERS and f"{m}.{node.name}" not in _REGROUPING:
                    out.append(f"{m}.{node.name}: {n} parameters")
    return sorted(out)


def test_no_private_function_threads_more_than_eight_arguments():
    many = private_functions_with_many_parameters()
    assert not many, (f"private functions over {MAX_PRIVATE_PARAMETERS} parameters (group what belongs together):\n"
                      + "\n".join(many))


def test_importing_the_packages_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, transferlab, transferlab.fit, transferlab.merge, transferlab.rank, transferlab.models, "
            "transferlab.train, transferlab.bench, transferlab.cli; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
