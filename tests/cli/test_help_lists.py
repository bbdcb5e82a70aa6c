"""A command whose --method/--strategy help spells out the choices names every entry of its registry (a help text
that lists five of twelve strategies sends users to --list only by chance)."""

from __future__ import annotations

import importlib
import re

import pytest
import typer.main

CASES = [("continual", "transferlab.continual", "STRATEGIES", "--strategy"),
         ("distill", "transferlab.distill", "METHODS", "--method"),
         ("domain", "transferlab.domain", "METHODS", "--method"),
         ("prune", "transferlab.prune", "METHODS", "--method")]


def _help(command: str, option: str) -> str:
    from transferlab.cli import app

    group = typer.main.get_command(app)
    cmd = group.commands[command]
    (param,) = [p for p in cmd.params if option in p.opts]
    return param.help or ""


@pytest.mark.parametrize(("command", "module", "registry", "option"), CASES)
def test_the_help_names_every_registered_choice(command, module, registry, option):
    names = list(getattr(importlib.import_module(module), registry))
    words = set(re.findall(r"[a-z_]+", _help(command, option)))
    assert [n for n in names if n not in words] == []
