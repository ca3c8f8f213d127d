"""The layer rules of docs/architecture.md, enforced on the import graph (function-level imports included):
a layer imports only the layers below it, modules import each other in no circle, and no code outside
``engines/`` branches on an engine's name."""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dbrunbook"

# Top to bottom. Packages on one line may import each other only where noted in the architecture doc.
LAYERS = (
    "cli",
    "tasks",
    "output",
    "metrics",
    grimp.Layer("backup", "drill", "fleet", "schedule", "sandbox", "migrate", independent=False),
    "context",
    "hosts",
    "agent",
    "toolstate",  # dbrunbook's own state in a server: uses an engine's dialect and a session
    "engines",
    "repository",
    "execution",
    "inventory",
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("dbrunbook", cache_dir=None, exclude_type_checking_imports=True)


def test_layers_import_only_downwards(graph: grimp.ImportGraph) -> None:
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS, containers={"dbrunbook"})
    found = sorted(
        f"{d.importer} -> {d.imported}: {sorted(r.heads)[0]} -> {sorted(r.tails)[0]}" for d in illegal for r in d.routes
    )
    assert found == []


def test_every_package_is_in_a_layer(graph: grimp.ImportGraph) -> None:
    named = {n for layer in LAYERS for n in (layer.module_tails if isinstance(layer, grimp.Layer) else {layer})}
    leaves = {"errors", "redact"}  # imported by everyone, importing only each other
    packages = {m.split(".")[1] for m in graph.modules if m.count(".") >= 1}
    assert packages - named - leaves == set()
    for leaf in leaves:
        imported = {i.split(".")[1] for i in graph.find_modules_directly_imported_by(f"dbrunbook.{leaf}")}
        assert imported <= leaves, f"{leaf} imports {imported - leaves}"


def test_no_module_imports_itself_in_a_circle(graph: grimp.ImportGraph) -> None:
    adjacency = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    circles = [sorted(c) for c in _strongly_connected(adjacency) if len(c) > 1]
    assert circles == []


def _strongly_connected(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(adjacency):
        if root in index:
            continue
        work = [(root, iter(sorted(adjacency[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(adjacency.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert sorted(map(sorted, _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}))) == [
        ["a", "b", "c"],
        ["d"],
    ]


# An engine's name compared, matched or tested for: what capabilities replace outside engines/.
ENGINE = r"(postgresql|mariadb|mysql|PostgreSQL|MariaDB|MySQL|POSTGRESQL|MARIADB|MYSQL)"
BRANCH = re.compile(
    rf"""(==|!=|\bin\b|\bnot in\b)\s*\(?\s*(["']{ENGINE}["']|Engine\.{ENGINE})"""
    rf"""|(["']{ENGINE}["']|Engine\.{ENGINE})\s*(==|!=)"""
    rf"""|isinstance\([^)]*\b{ENGINE}\b"""
    rf"""|engine\.value\s*(==|!=|in\b|not in\b)"""
)


def engine_branches(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if BRANCH.search(line)]


def test_no_code_outside_engines_branches_on_the_engine_name() -> None:
    found = [
        f"{path.relative_to(SRC)}: {line}"
        for path in sorted(SRC.rglob("*.py"))
        if "engines" not in path.relative_to(SRC).parts
        for line in engine_branches(path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        'if engine == "postgresql":',
        "if ctx.cluster.engine.value in ('mariadb', 'mysql'):",
        "if cluster.engine is Engine.MARIADB or x != 'mysql':",
        "assert isinstance(engine, MariaDB)",
        "mariadb = cluster.engine.value not in ALLOWED",
    ],
)
def test_the_branch_finder_sees_each_form(line: str) -> None:
    assert engine_branches(line) == [line]


def test_the_branch_finder_leaves_data_alone() -> None:
    assert engine_branches('{"engine": "postgresql", "port": 5432}\nget_engine("mariadb")') == []


# Functions that may return a dict[str, Any]: renderings of a typed value into the --json document, and data that
# is a document by nature. Everything else passes typed results (issue 13).
_DOCUMENTS = {
    "as_dict",  # every typed result's own rendering
    "recap",  # fleet.FleetResult's rendering of its outcomes
    "error_document",  # the --json error document
    "records",  # execution.sql: rows of a SHOW statement by column name (the server's own shape)
    "arg_opts",  # invoke's Task API
    "follow",  # the agent's report, printed as JSON on the host and parsed into BinlogFollow on the controller
}
_DOCUMENT_MODULES = {"sandbox/inventory_gen.py", "repository/storage_s3.py"}  # a YAML document; boto3 kwargs


def test_orchestration_boundaries_pass_typed_results_not_dicts() -> None:
    import ast

    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in _DOCUMENT_MODULES:
            continue
        functions = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)]
        found += [
            f"{rel}:{f.lineno} {f.name}"
            for f in functions
            if f.returns is not None and "dict[str, Any]" in ast.unparse(f.returns) and f.name not in _DOCUMENTS
        ]
    assert found == [], "return a dataclass (with as_dict for --json) instead: " + ", ".join(found)
