"""Size limits of the developers' guide (issue 13, "Done when"): no module over 500 lines, no function over 60.

A function's length is ``end_lineno - lineno + 1`` of its ``def`` (decorators excluded, its docstring and
nested functions included). Offenders that others are still splitting are listed in ``TO_SPLIT``; the list
must be exact, so it can only shrink: an entry that is short enough now has to go.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "dbrunbook"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# Functions allowed over the limit while they wait to be split: (module under src/dbrunbook, qualified name).
# Empty since issue 13; keep it so, or say in the entry's comment which issue splits it.
TO_SPLIT: set[tuple[str, str]] = set()


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Qualified name -> length of every function (methods and nested ones too) longer than ``limit``."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    length = child.end_lineno - child.lineno + 1
                    if length > limit:
                        found[name] = length
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _modules() -> list[Path]:
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 50, f"found only {len(modules)} modules under {SRC}"
    return modules


def test_no_module_over_500_lines() -> None:
    too_long = [
        f"{p.relative_to(SRC)}: {n} lines"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not too_long, "modules over 500 lines, split them by meaning:\n" + "\n".join(too_long)


def test_no_function_over_60_lines_beyond_the_list() -> None:
    found = {
        (str(p.relative_to(SRC)), name): length
        for p in _modules()
        for name, length in long_functions(p.read_text()).items()
    }
    new = [f"{path} {name}: {found[path, name]} lines" for path, name in sorted(found.keys() - TO_SPLIT)]
    split = [f"{path} {name}" for path, name in sorted(TO_SPLIT - found.keys())]
    problems = [
        *(["functions over 60 lines, split them into named steps:", *new] if new else []),
        *(["no longer over 60 lines (or gone), remove them from TO_SPLIT:", *split] if split else []),
    ]
    assert not problems, "\n".join(problems)


def test_the_measure_counts_from_def_to_last_line_and_names_methods_and_nested_functions() -> None:
    def block(indent: str) -> str:
        return "\n".join(f"{indent}x{i} = {i}" for i in range(59))

    source = (
        f"@decorator\ndef fits():\n{block('    ')}\n\n"  # def + 59 lines = 60: allowed; decorators do not count
        f"class C:\n    def grows(self):\n{block('        ')}\n        y = 1\n\n"  # 61
        f"def outer():\n    def inner():\n{block('        ')}\n        z = 2\n    return inner\n"  # 61 in 63
    )
    assert long_functions(source) == {"C.grows": 61, "outer": 63, "outer.inner": 61}
