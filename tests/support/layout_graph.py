"""The project's import graph, read from the source with ``ast`` (nothing is imported), for the
layout tests: module → the project modules it imports, with cycle detection."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PACKAGES: dict[str, str] = {
    "vocab": "vocab",
    "explore": "explore",
    "fm_core": "fm_core",
    "proplog": "logging",
    "ope": "ope",
    "sim": "sim",
    "loop": "loop",
    "api": "api",
    "cli": "cli",
    "bench": "bench",
}
"""Import name → folder (the propensity log's folder ``logging/`` installs as ``proplog``)."""

_LIBRARIES = ("vocab", "explore", "fm_core", "proplog", "ope", "sim")
_SHELLS = ("loop", "api", "cli", "bench")
FORBIDDEN: dict[str, frozenset[str]] = {
    "vocab": frozenset(PACKAGES) - {"vocab"},
    **{name: frozenset(_SHELLS) for name in _LIBRARIES if name != "vocab"},
    "loop": frozenset({"api", "cli", "bench"}),
    "api": frozenset({"cli", "bench"}),
    "bench": frozenset({"cli"}),
    "cli": frozenset(),
}
"""What each folder may not import (DESIGN.md §2, issue "One room per job")."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    parts[0] = next(name for name, folder in PACKAGES.items() if folder == parts[0])
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for folder in PACKAGES.values()
        for path in sorted((REPO / folder).rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST) -> Iterator[tuple[str, str | None]]:
    """(module, name) of every absolute import outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for other in node.orelse:
                yield from _imported_names(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from ((node.module, alias.name) for alias in node.names)
        yield from _imported_names(node)


def imported_names(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) of every absolute import of the file at ``path``, TYPE_CHECKING aside."""
    return list(_imported_names(ast.parse(path.read_text(), filename=str(path))))


def _all_imports() -> dict[str, list[tuple[str, str | None]]]:
    return {module: imported_names(path) for module, path in project_modules().items()}


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (``from pkg import mod`` points at ``pkg.mod``)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, imported in _all_imports().items():
        targets = set()
        for name, member in imported:
            full = f"{name}.{member}" if member else name
            target = full if full in modules else name
            if target in modules and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def third_party_imports() -> dict[str, set[str]]:
    """Module → the modules outside the project it imports."""
    return {
        module: {name for name, _ in imported if name.split(".")[0] not in PACKAGES}
        for module, imported in _all_imports().items()
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
