"""The twin is pure simulation: SimPy, the standard library and the pure core modules only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED = {
    "simpy",
    "twin",
    "plant.tags",
    "plant.rtd",
    "plant.text",
    "plant.audit_chain",  # imports plant.payload for type checking only
    "__future__",
}
FORBIDDEN = {"asyncio", "socket", "logging", "time", "datetime", "threading", "os", "subprocess"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_twin_imports_only_simpy_stdlib_and_the_registry() -> None:
    twin = Path(__file__).resolve().parents[2] / "twin"
    files = sorted(twin.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for name in imports(path):
            top = name.split(".")[0]
            if name in ALLOWED or top in ALLOWED:
                continue
            assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
            assert top not in FORBIDDEN, f"{path.name} imports {name}: the twin has no I/O or clock"
