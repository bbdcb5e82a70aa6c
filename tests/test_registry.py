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
