"""No import cycles in `relaychain`, hidden or not.

Every import statement counts, at module level or inside a function (a
function-local import that closes a cycle only moves the failure to run
time); only imports under `if TYPE_CHECKING:` are left out, since they never
run. A cycle is a strongly connected group of modules in that graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import relaychain

PACKAGE = Path(relaychain.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """Module name -> file, following the symlinked folders (agents, bus, schemas, observability)."""
    found: dict[str, Path] = {}
    for path in _python_files(PACKAGE):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("relaychain", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def _python_files(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and entry.name != "__pycache__":
            yield from _python_files(entry)
        elif entry.suffix == ".py":
            yield entry


def _imports(tree: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {t for t in targets if t in known and t != module}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join([*parts[:keep], *([node.module] if node.module else [])])


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", known)
        for name, path in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_relaychain_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "relaychain.bus.runtime" in graph and "relaychain.agents.router" in graph, "the symlinked folders count"
    assert not cycles(graph), cycles(graph)


def test_the_detector_sees_a_cycle_hidden_in_a_function() -> None:
    tree_a = ast.parse("def f():\n    from relaychain import b\n")
    tree_b = ast.parse("from relaychain.a import x\nif TYPE_CHECKING:\n    from relaychain import c\n")
    known = {"relaychain.a": Path("a.py"), "relaychain.b": Path("b.py"), "relaychain.c": Path("c.py")}
    graph = {
        "relaychain.a": _imports(tree_a, "relaychain.a", False, known),
        "relaychain.b": _imports(tree_b, "relaychain.b", False, known),
        "relaychain.c": set(),
    }
    assert graph["relaychain.b"] == {"relaychain.a"}
    assert cycles(graph) == [["relaychain.a", "relaychain.b"]]
