"""The house's structural facts, counted: import cycles, imports against the layers, modules over 400 lines without a
reason, functions over 80 lines outside the CLI, cross-package imports of private modules, private functions over 8
parameters. The counting is
tests/test_architecture.py's own (one owner): this script loads it and prints the numbers, e.g. for a closing note.

    .venv/bin/python scripts/structure_facts.py

Exit status 0 when every count is 0."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "tests" / "test_architecture.py")
    arch = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(arch)
    facts = {
        "modules": (len(arch.MODULES), None),
        "import cycles": (len(arch.import_cycles()), arch.import_cycles()),
        "imports against the layers": (len(arch.imports_against_the_layers()), arch.imports_against_the_layers()),
        f"modules over {arch.MAX_LINES} lines without a reason": (len(arch.oversized_modules()),
                                                                  arch.oversized_modules()),
        f"functions over {arch.MAX_FUNCTION_LINES} lines outside the CLI": (len(arch.long_functions()),
                                                                            arch.long_functions()),
        "cross-package private imports": (len(arch.private_imports_across_packages()),
                                          arch.private_imports_across_packages()),
        f"private functions over {arch.MAX_PRIVATE_PARAMETERS} parameters": (
            len(arch.private_functions_with_many_parameters()), arch.private_functions_with_many_parameters()),
    }
    bad = 0
    for name, (count, items) in facts.items():
        print(f"{name}: {count}")
        for item in items or []:
            print(f"  {item}")
        bad += count if items is not None else 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
