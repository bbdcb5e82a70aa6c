import pytest

from transferlab._registry import Registry
from transferlab.errors import RegistryError, TransferlabError


def test_register_get_list_and_meta():
    r: Registry = Registry("widget")

    @r.register("b_two", paper="P")
    def b():
        return 2

    r.register("a_one")(lambda: 1)
    assert r.list() == ["a_one", "b_two"]
    assert r.list("b_*") == ["b_two"]
    assert r.get("b_two")() == 2
    assert r.meta("b_two") == {"paper": "P"}
    assert "a_one" in r and len(r) == 2


def test_duplicate_and_unknown_names_raise_clear_errors():
    r: Registry = Registry("widget")
    r.register("a_one")(object())
    with pytest.raises(RegistryError, match="already registered"):
        r.register("a_one")(object())
    with pytest.raises(TransferlabError, match=r"unknown widget 'nope'; known: a_one"):
        r.get("nope")


@pytest.mark.parametrize("bad", ["CamelCase", "with-dash", "1digit", ""])
def test_names_must_be_lower_snake(bad):
    with pytest.raises(RegistryError, match="lower_snake"):
        Registry("widget").register(bad)


def test_registries_import_their_modules_lazily():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from transferlab.rank._registry import METRICS\n"
        "from transferlab.fit._registry import METHODS\n"
        "assert 'transferlab.rank.logme' not in sys.modules and 'transferlab.fit._peft' not in sys.modules\n"
        "assert 'logme' in METRICS.list() and 'lora' in METHODS and 'linear_probe' in METHODS\n"
        "assert 'transferlab.rank.logme' in sys.modules and 'transferlab.fit._peft' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("registry_path", ["transferlab.rank._registry:METRICS",
                                           "transferlab.merge._registry:MERGE_METHODS",
                                           "transferlab.fit._registry:METHODS"])
def test_discovered_modules_each_register_an_entry(registry_path):
    """Registries find their modules by listing the package's files: every file that is not declared infrastructure
    must register something (a stray helper module would otherwise be imported as a method)."""
    import importlib

    mod_name, attr = registry_path.split(":")
    registry = getattr(importlib.import_module(mod_name), attr)
    names = registry.list()
    owners = {registry.get(n).__module__ for n in names}
    for m in registry._modules():
        assert m in owners, f"{m} registers no {registry.kind}: add it to INFRASTRUCTURE in {mod_name}"
