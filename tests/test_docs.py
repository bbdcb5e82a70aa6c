"""Every fenced code block of docs/*.md works as written (issue 29: "docs that fail as written"), as
tests/test_readme.py does for the README.

- ``bash`` / ``console`` / ``sh``: every ``transferlab ...`` command line (also after ``torchrun ... -m transferlab``;
  in a console block only the ``$ `` lines) is parsed by the real click command (``make_context``, no invoke), so an
  unknown flag or a value of the wrong type fails. Synopsis lines are made concrete first: ``[...]`` kept (the first
  of ``a | b`` alternatives), ``a|b|c`` -> ``a``, ``...`` dropped, each placeholder (``DATA``, ``N``, ...) replaced
  from ``PLACEHOLDERS`` (an unknown one fails the test). ``make``/``pip``/``ray``/``export``/... lines are not ours.
- ``python``: every block must compile, and what it uses of a package it imports must be there after those imports
  alone (``import transferlab`` then ``transferlab.models.x`` fails unless ``transferlab`` imports ``models``; checked
  in a fresh interpreter). Blocks in ``PYTHON_RUNS`` run (slow tests), in order, one namespace per page, in a temp
  working directory, with the substitutions listed there, each asserted to apply.
- ``yaml``: parsed, and validated with the model of what it is (``YAML_KINDS``).
- A block that is none of these is in ``SKIP`` with the reason; a new block that is neither covered nor listed fails.

Every built-in dataset is a class-stratified sample (``TINY_TRAIN`` / ``TINY_TEST`` examples) while the slow tests
run, so the blocks' own dataset names stay as written.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHELL = ("bash", "console", "sh", "shell")


def _blocks(page: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(\w*)\n(.*?)^```", (DOCS / page).read_text(), flags=re.S | re.M)


PAGES = sorted(p.name for p in DOCS.glob("*.md"))
BLOCKS = {(page, i): b for page in PAGES for i, b in enumerate(_blocks(page))}

# (page, index): (how the block starts, why it is not run). The start guards against a shifted index.
SKIP = {
    ("architecture.md", 0): ("", "a layer diagram, not code"),
    ("architecture.md", 1): ("python", "a synopsis of train()'s signature: its call is bound to the signature"),
    ("architecture.md", 2): ("python", "run as written by tests/train/test_architecture_example.py"),
    ("architecture.md", 3): ("python", "a fragment of a capability's code (`architecture=...`): its RunOutput call "
                                       "is bound to the signature"),
    ("bench.md", 2): ("json", "a sketch of bench.json with `...` elisions: its keys are checked against a real "
                              "bench.json by the bench page's run"),
    ("bench.md", 6): ("python", "needs a Ray cluster (`address=\"auto\"`): its calls are bound to the signatures"),
    ("merge.md", 3): ("python", "plain transformers on the output of the previous block's Hugging Face folders "
                                "(./minilm, ./ft-news, ...): tests/merge/test_hf_merge.py does this"),
    ("merge.md", 5): ("python", "merges fits of the built-in Lite0 (runs/a, runs/b: made by the page's first block on "
                                "full data): tests/merge/test_merge_check.py runs the check on tiny fits; its calls "
                                "are bound to the signatures"),
    ("scale.md", 2): ("python", "starts two DDP processes (devices=2): tests/train covers DDP; its calls are bound "
                                "to the signatures"),
}
BOUND_ONLY = {  # skipped Python blocks whose calls are bound to the signatures: extra imports the fragment assumes
    ("architecture.md", 1): "",
    ("architecture.md", 3): "from transferlab.models import RunOutput\n",
    ("bench.md", 6): "",
    ("merge.md", 5): "",
    ("scale.md", 2): "",
}

# Values for the placeholders of synopsis lines: strings that make_context accepts where the doc's value would go.
PLACEHOLDERS = {
    "DATA": "builtin:digits", "DATA2": "builtin:shapes", "SAVED_MODEL": "runs/fit-digits", "SOURCE": "builtin:digits", "TARGET": "builtin:shapes",
    "A": "builtin:shapes", "B": "builtin:textures", "K": "5", "ZOO": "builtin:vision", "REF": "builtin:tiny",
    "DIR": "runs/x", "MODEL_DIR": "runs/x", "FITTED": "runs/y", "T": "16", "T2": "17", "N": "10", "PX": "32",
    "S": "0", "M": "1", "LR": "0.001", "NAME": "head", "COL": "id", "KEY": "a", "VALUE": "1", "METHOD": "kd",
    "STRATEGY": "replay", "ARCH": "resnet",
}


def _commands(body: str, lang: str) -> list[str]:
    """The transferlab argument strings of a shell block (continuations joined, comments dropped)."""
    lines, cur = [], ""
    for raw in body.splitlines():
        if lang == "console" and not cur:
            if not raw.startswith("$ "):
                continue  # output
            raw = raw[2:]
        cur += " " + raw.rstrip()
        if cur.endswith("\\"):
            cur = cur[:-1]
            continue
        lines.append(cur.split(" #")[0].strip())
        cur = ""
    out = []
    for line in lines:
        m = re.match(r"^(?:\S*/)?transferlab\s+(.*)$", line) or re.match(r"^torchrun\s.*?-m\s+transferlab\s+(.*)$",
                                                                          line)
        if m:
            out.append(m.group(1))
    return out


def _concrete(args: str) -> tuple[list[str], bool]:
    """A synopsis made concrete (see the module's doc); the bool: only `...` stood for the arguments."""
    while True:
        new = re.sub(r"\[([^\[\]]*)\]", lambda m: " " + m.group(1).split(" | ")[0] + " ", args)
        if new == args:
            break
        args = new
    args = re.sub(r"\{(\w+),[\w,]*\}", r"\1", args)
    tokens: list[str] = []
    for tok in shlex.split(args):
        if tok == "..." and tokens and tokens[-1].startswith("--"):  # `--metrics ...`: some value
            tok = "x"
        tok = re.sub(r"^([^|\s]+)\|\S+$", r"\1", tok) if not tok.startswith("'") else tok
        tok = tok.replace(",...", "").replace("...", "")
        if not tok:
            continue

        def sub(m: re.Match) -> str:
            assert m.group(0) in PLACEHOLDERS, f"placeholder {m.group(0)} in {args!r}: add it to PLACEHOLDERS"
            return PLACEHOLDERS[m.group(0)]

        tokens.append(re.sub(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?![a-z0-9])", sub, tok))
    only_dots = [t for t in shlex.split(args) if not t.startswith("-")][-1:] == ["..."] and len(
        [t for t in tokens if t.startswith("-")]) == 0
    return tokens, only_dots


def _click():
    """The click that typer builds its commands with (typer 0.2x vendors its own as typer._click)."""
    try:
        from typer._click import core, exceptions
    except ImportError:  # typer on the public click
        import click.core as core
        import click.exceptions as exceptions
    return core, exceptions


def _parse(argv: list[str], only_command: bool = False) -> object:
    """click's parse of a transferlab command line, sub-commands resolved; raises click's UsageError/BadParameter."""
    import typer

    from transferlab.cli._app import app

    core, _ = _click()
    if "merge" in argv[:2]:  # as cli.main does: `--models A B` -> `--models A --models B`
        from transferlab.cli.merge import expand_multi

        argv = expand_multi(argv)
    cmd = typer.main.get_command(app)
    ctx = None
    name, rest = "transferlab", list(argv)
    while hasattr(cmd, "list_commands"):  # a group (typer's TyperGroup is not a click Group subclass)
        assert rest, f"{argv}: a command group without a sub-command"
        ctx = core.Context(cmd, info_name=name, parent=ctx)
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"{argv}: no command {rest[0]!r} in {name!r}"
        name, cmd, rest = rest[0], sub, rest[1:]
    if only_command:
        return cmd
    return cmd.make_context(name, rest, parent=ctx)


SHELL_LINES = [(page, i, c) for (page, i), (lang, body) in BLOCKS.items() if lang in SHELL
               for c in _commands(body, lang)]


def test_every_block_is_covered_or_listed():
    for key, (lang, body) in BLOCKS.items():
        if key in SKIP:
            assert SKIP[key][0] == lang, f"{key}: SKIP says a {SKIP[key][0]!r} block, the doc has {lang!r}"
        elif lang in SHELL:
            assert _commands(body, lang), f"{key}: a shell block without a transferlab command: list it in SKIP"
        elif lang == "python":
            assert key in PYTHON_RUNS, f"{key}: a new Python block: run it (PYTHON_RUNS) or list it in SKIP"
        elif lang == "yaml":
            assert key in YAML_KINDS, f"{key}: a new YAML block: validate it (YAML_KINDS) or list it in SKIP"
        else:
            raise AssertionError(f"{key}: a {lang!r} block this test does not know: cover it or list it in SKIP")
    for table in (SKIP, PYTHON_RUNS, YAML_KINDS):
        for key, value in table.items():
            assert key in BLOCKS, f"{key} is listed but the doc has no such block"
            start = value[0] if table is not SKIP else None
            if start:
                assert BLOCKS[key][1].startswith(start), f"{key} no longer starts with {start!r}: update the table"


@pytest.mark.parametrize(("page", "index", "args"), SHELL_LINES, ids=[f"{p}[{i}]" for p, i, _ in SHELL_LINES])
def test_shell_command_parses(page, index, args):
    argv, only_command = _concrete(args)
    _parse(argv, only_command)


def test_a_wrong_flag_or_value_fails_the_parse():
    _, exc = _click()
    ctx = _parse(["fit", "builtin:digits", "--model", "x", "--method", "head", "--epochs", "2"])
    assert ctx.params["epochs"] == 2 and ctx.params["data"] == "builtin:digits"
    with pytest.raises(exc.UsageError, match="--epoch"):
        _parse(["fit", "builtin:digits", "--model", "x", "--method", "head", "--epoch", "2"])
    with pytest.raises(exc.BadParameter):
        _parse(["fit", "builtin:digits", "--model", "x", "--method", "head", "--epochs", "two"])
    with pytest.raises(AssertionError, match="placeholder WHAT"):
        _concrete("fit WHAT")


# --- Python ---------------------------------------------------------------------------------------------------

PYTHON_BLOCKS = [k for k, (lang, _) in BLOCKS.items() if lang == "python"]


@pytest.mark.parametrize("key", PYTHON_BLOCKS, ids=[f"{p}[{i}]" for p, i in PYTHON_BLOCKS])
def test_python_block_compiles(key):
    compile(BLOCKS[key][1], f"{key[0]}[{key[1]}]", "exec")


def _module_uses(code: str) -> list[tuple[str, str]]:
    """(an `import pkg` of the block, the dotted attribute chain it uses on it) pairs."""
    tree = ast.parse(code)
    plain = {a.asname or a.name: a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
             if "." not in a.name}
    explicit = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    uses = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            chain, x = [], n
            while isinstance(x, ast.Attribute):
                chain.append(x.attr)
                x = x.value
            if isinstance(x, ast.Name) and x.id in plain:
                chain = [plain[x.id], *reversed(chain)]
                # the longest prefix not imported explicitly, up to the attribute after it
                uses.add((".".join(chain[:1]), ".".join(chain[1:])))
    return [(m, a) for m, a in sorted(uses) if not any(f"{m}.{a}".startswith(e + ".") or f"{m}.{a}" == e
                                                       for e in explicit if "." in e)]


@pytest.mark.slow  # a fresh interpreter importing torch, timm, peft: about 6 s
def test_python_blocks_import_what_they_use():
    """In a fresh interpreter: `import pkg` alone gives each `pkg.a.b` a block uses (its submodules included)."""
    pairs = sorted({(key, m, a) for key in PYTHON_BLOCKS for m, a in _module_uses(BLOCKS[key][1])})
    checks = [(f"{k[0]}[{k[1]}]", m, a) for k, m, a in pairs]
    script = ("import importlib, json, sys\nbad = []\nfor where, m, a in json.loads(sys.argv[1]):\n"
              "    x = importlib.import_module(m)\n    for part in a.split('.'):\n"
              "        if not hasattr(x, part):\n            bad.append(f'{where}: {m}.{a} (no {part!r} after import {m})')\n"
              "            break\n        x = getattr(x, part)\nprint(json.dumps(bad))\n")
    # one fresh process: it imports only the blocks' top-level packages, transferlab's first (a third-party package
    # never imports transferlab's submodules, so no block's check can be passed by another's imports)
    checks.sort(key=lambda c: (c[1] != "transferlab", c))
    out = subprocess.run([sys.executable, "-c", script, json.dumps(checks)], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    bad = json.loads(out.stdout)
    assert not bad, bad


@pytest.mark.parametrize("key", sorted(BOUND_ONLY), ids=[f"{p}[{i}]" for p, i in sorted(BOUND_ONLY)])
def test_skipped_python_block_calls_bind(key):
    """The calls of a block that is not run name real parameters in an order the signature takes."""
    import inspect

    code = BLOCKS[key][1]
    tree = ast.parse(code)
    ns: dict = {}
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(BOUND_ONLY[key] + "\n".join(ast.unparse(n) for n in imports), ns)
    bound = 0
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and callable(ns.get(n.func.id)):
            if inspect.isclass(ns[n.func.id]) and not n.keywords and not n.args:
                continue
            sig = inspect.signature(ns[n.func.id])
            sig.bind(*[None] * len(n.args), **{k.arg: None for k in n.keywords if k.arg})
            bound += 1
    assert bound, f"{key}: no call of an imported name to check"


# --- YAML -----------------------------------------------------------------------------------------------------

YAML_KINDS = {("merge.md", 4): ("method: ties", "merge recipe")}


@pytest.mark.parametrize("key", sorted(YAML_KINDS), ids=[f"{p}[{i}]" for p, i in sorted(YAML_KINDS)])
def test_yaml_block_validates(key, tmp_path):
    import yaml

    text = BLOCKS[key][1]
    data = yaml.safe_load(text)
    kind = YAML_KINDS[key][1]
    if kind == "merge recipe":
        from transferlab.merge import MergeRecipe, load_recipe

        MergeRecipe.model_validate(data)
        (tmp_path / "recipe.yaml").write_text(text)
        r = load_recipe(tmp_path / "recipe.yaml")
        assert r.method == data["method"] and len(r.models) == len(data["models"])
    else:
        raise AssertionError(f"no validator for a {kind}")





# --- Python and shell blocks run for real (slow) -------------------------------------------------------------------

TINY_TRAIN, TINY_TEST = 60, 60  # builtin:mixed-source has 29 classes: 2 each
M = "builtin:efficientnet_lite0"  # the 3.4M-parameter model blocks name; {tiny} is tests/conftest.py's 356k one

# (page, index): (how the block starts, [(text, replacement), ...]); each replacement must apply. Blocks of a page run
# in this order in one namespace, after the page's PRELUDE (inputs a block assumes exist, made tiny).
PYTHON_RUNS = {
    ("auto.md", 1): ("from transferlab.auto import auto", [
        ('"builtin:digits", budget="10m"', '"builtin:digits", "builtin:small_resnet_shapes", budget="2m", '
                                           'image_size=32')]),
    ("bench.md", 1): ("from transferlab.bench import bench_rank", [
        ('"builtin:vision"', '"builtin:pixels,builtin:small_resnet_fashion,builtin:small_resnet_shapes"'),
        ("ensemble=2)", "ensemble=2, epochs=1, image_size=32, n_boot=20)")]),
    ("bench.md", 4): ("from transferlab.bench import bench_merge", [
        (f'"{M}"', '"{tiny}"'), ("tune=True)", 'tune=True, methods="average", epochs=1, image_size=32)')]),
    ("continual.md", 1): ("from transferlab.continual import run", [("epochs=5,", "epochs=1, image_size=16, buffer_size=20,")]),
    ("distill.md", 1): ("from transferlab.distill import distill", [
        ('"kd", out=', '"kd", epochs=1, image_size=32, out=')]),
    ("domain.md", 1): ("from transferlab.domain import adapt", [
        (f'"{M}"', '"{tiny}"'), ("epochs=10,", "epochs=1, image_size=32, batch_size=8,")]),
    ("fit.md", 1): ("from transferlab.fit import fit", [
        (f'"{M}"', '"{tiny}"'), ("image_size=128, epochs=5", "image_size=32, epochs=1"),
        ('"builtin:minilm_l6"', '"{tiny_text}"'), ("epochs=3", "epochs=1")]),
    ("merge.md", 1): ("from transferlab.merge import merge", [(f'"{M}"', '"{tiny}"')] * 2),
    ("models.md", 1): ("from transferlab.data import load_dataset", []),
    ("models.md", 2): ("import timm", []),
    ("models.md", 3): ("net = timm.create_model(NAME", []),
    ("models.md", 4): ("from peft import PeftModel", []),
    ("models.md", 5): ("import torch", []),
    ("models.md", 6): ("transferlab.models.load(DIR", [
        *[("/where/it/is/now/r18.safetensors", "{tiny_weights}")] * 2, ("timm:resnet18@", "timm:test_efficientnet@")]),
    ("prune.md", 1): ("from transferlab.prune import prune", [
        ('"SOURCE", "DATA"', '"builtin:mixed-source", "builtin:shapes"')]),
    ("prune.md", 3): ("from transferlab.pretrain import pretrain", [("epochs=10", "epochs=1")]),
}

# What a page's blocks assume exists (a teacher, a surrogate, the placeholders' values), made tiny.
PRELUDE = {
    "distill.md": 'from transferlab.fit import fit as _fit\n'
                  '_fit("builtin:shapes", "{tiny}", "head", epochs=1, image_size=32, out="runs/shapes-teacher")\n',
    "models.md": 'import json as _json\nfrom transferlab.fit import fit as _fit\n',
    "prune.md": 'from transferlab.fit import fit as _fit\n'
                '_fit("builtin:mixed-source", "{tiny}", "head", epochs=1, image_size=32, out="runs/surrogate")\n',
}
BEFORE = {  # (page, index): code run just before that block
    ("models.md", 2): 'DIR = "runs/digits"\n',
    ("models.md", 3): 'NAME = _json.load(open(DIR + "/transferlab.json"))["architecture"]["name"]; C = 10\n',
    ("models.md", 4): '_fit("builtin:digits", "builtin:small_resnet_shapes", "lora", epochs=1, image_size=32, '
                      'out="runs/lora")\nDIR = "runs/lora"\n_card = _json.load(open(DIR + "/transferlab.json"))\n'
                      'REF, NUM_CLASSES = _card["model"], _card["num_classes"]\n',
    ("models.md", 5): 'from tests.conftest import make_text_dataset as _texts\n'
                      '_fit(_texts(6), "{tiny_text}", "finetune", epochs=1, out="runs/reviews")\nDIR = "runs/reviews"\n',
    ("models.md", 6): '_fit("builtin:digits", "{tiny}", "adapter", epochs=1, image_size=32, out="runs/adapter")\n'
                      'DIR = "runs/adapter"\n'
                      'assert _json.load(open(DIR + "/transferlab.json"))["weights"] == "trained"\n',
}
CHECKS = {  # page: files the blocks must have written (relative to the temp working directory)
    "auto.md": ["runs/auto-digits/report.html"],
    "bench.md": ["runs/bench-rank/bench.json", "runs/bench-merge/bench_merge.json"],
    "continual.md": ["runs/cl/metrics.json"],
    "distill.md": ["runs/student/metrics.json"],
    "domain.md": ["runs/dm/metrics.json"],
    "fit.md": ["runs/lora/transferlab.json", "runs/reviews/tokenizer"],
    "merge.md": ["runs/merged/model.safetensors", "runs/merged-fisher/model.safetensors"],
    "models.md": ["runs/digits/config.json", "runs/lora/adapter_config.json", "runs/reviews/modeling_transferlab.py"],
    "prune.md": ["runs/pruned/transferlab-dataset.json", "runs/pruned-resnet/transferlab.json"],
}


def _substituted(code: str, subs: list[tuple[str, str]], values: dict[str, str], where: str) -> str:
    for old, new in subs:
        assert old in code, f"{where}: {old!r} is no longer in the block: update the substitution"
        code = code.replace(old, new.format(**values), 1)
    return code


@pytest.fixture
def tiny_builtins(monkeypatch):
    """Every built-in dataset as a class-stratified sample: TINY_TRAIN train, TINY_TEST test examples."""
    from transferlab.data._loaders import BUILTIN_DATASETS

    real = BUILTIN_DATASETS.get

    def get(name):
        load = real(name)
        return lambda split="train", **kw: load(split=split, **kw).stratified_sample(
            TINY_TRAIN if split == "train" else TINY_TEST)

    monkeypatch.setattr(BUILTIN_DATASETS, "get", get)


def _cli(cmd: str, values: dict[str, str], subs: list[tuple[str, str]], extra: list[str]) -> None:
    from transferlab.cli import main

    argv = shlex.split(_substituted(cmd, subs, values, cmd)) + extra
    assert main(argv) == 0, argv


PAGES_RUN = sorted({p for p, _ in PYTHON_RUNS} | {"merge.md"})


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_RUN)
def test_page_runs(page, tmp_path, monkeypatch, tiny_builtins, tiny_model_ref, tiny_text_ref, tiny_timm_weights,
                   capsys):
    values = {"tiny": tiny_model_ref, "tiny_text": tiny_text_ref, "tiny_weights": str(tiny_timm_weights)}
    monkeypatch.chdir(tmp_path)
    if page == "merge.md":  # the shell block makes the fits the Python block and the recipe merge
        cmds = _commands(BLOCKS[("merge.md", 0)][1], "bash")
        assert [c.split()[0] for c in cmds] == ["fit", "fit", "merge", "predict"], cmds
        fast = ["--epochs", "1", "--image-size", "32", "-q"]
        _cli(cmds[0], values, [(M, "{tiny}")], fast)
        _cli(cmds[1], values, [(M, "{tiny}")], fast)
        _cli(cmds[2], values, [(M, "{tiny}")], ["-q"])
        _cli(cmds[3], values, [], ["--output-file", "merged-digits.csv"])
        recipe = _substituted(BLOCKS[("merge.md", 4)][1], [(M, "{tiny}"), ("out: runs/merged", "out: runs/recipe")],
                              values, "merge.md[4]")
        (tmp_path / "merge.yaml").write_text(recipe)
        _cli("merge --config merge.yaml -q", values, [], [])
        assert (tmp_path / "runs" / "recipe" / "model.safetensors").is_file()
    ns: dict = {"__name__": "__docs__"}
    if page in PRELUDE:
        exec(PRELUDE[page].format(**values), ns)
    for (p, i), (_, subs) in PYTHON_RUNS.items():
        if p != page:
            continue
        if (p, i) in BEFORE:
            exec(BEFORE[(p, i)].format(**values), ns)
        code = _substituted(BLOCKS[(p, i)][1], subs, values, f"{p}[{i}]")
        exec(compile(code, f"{p}[{i}]", "exec"), ns)
    for f in CHECKS.get(page, []):
        assert (tmp_path / f).exists(), f
    if page == "models.md":  # the shell block: the Deploy command of auto, on a fit and a folder of new images
        import shutil

        from tests.conftest import write_image_folder

        shutil.copytree("runs/digits", "runs/auto")
        write_image_folder(tmp_path / "new_photos" / "x", n_per_class=2, size=8)
        (cmd,) = _commands(BLOCKS[("models.md", 0)][1], "bash")
        _cli(cmd, values, [], [])
        header = (tmp_path / "new_photos.csv").read_text().splitlines()[0]
        assert "proba_0" in header and "prediction" in header, header
    if page == "bench.md":  # the sketch of bench.json names keys a real one has
        sketch = set(re.findall(r'^[ {]"(\w+)":', BLOCKS[("bench.md", 2)][1], flags=re.M))  # its top-level keys

        real = set(json.loads((tmp_path / "runs/bench-rank/bench.json").read_text()))
        assert len(sketch) >= 8 and sketch <= real, sketch - real
