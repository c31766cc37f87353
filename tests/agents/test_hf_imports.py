"""Every import from transformers in the agents runs under the one lock (see `agents/hf_imports.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

AGENTS = Path(__file__).resolve().parents[2] / "agents"


def imports_outside_the_lock(tree: ast.AST) -> list[int]:
    """Line numbers of `import transformers...` / `from transformers... import` not inside `with TRANSFORMERS_LOCK:`."""
    found: list[int] = []

    def visit(node: ast.AST, locked: bool) -> None:
        if isinstance(node, ast.With):
            locked = locked or any(
                isinstance(item.context_expr, ast.Name) and item.context_expr.id == "TRANSFORMERS_LOCK"
                for item in node.items
            )
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "transformers" and not locked:
            found.append(node.lineno)
        if isinstance(node, ast.Import) and not locked:
            found.extend(node.lineno for alias in node.names if alias.name.split(".")[0] == "transformers")
        for child in ast.iter_child_nodes(node):
            visit(child, locked)

    visit(tree, False)
    return found


def test_transformers_is_imported_only_under_the_lock() -> None:
    checked = 0
    unlocked = {}
    for path in AGENTS.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "transformers" not in text:
            continue
        tree = ast.parse(text)
        checked += 1
        if lines := imports_outside_the_lock(tree):
            unlocked[str(path.relative_to(AGENTS))] = lines
    assert checked >= 4, "the engines, the token counter and the embedder import transformers"
    assert unlocked == {}


def test_the_check_finds_an_import_outside_the_lock() -> None:
    tree = ast.parse(
        "def load():\n    from transformers import AutoModel\n    with TRANSFORMERS_LOCK:\n        import transformers\n"
    )
    assert imports_outside_the_lock(tree) == [2]
