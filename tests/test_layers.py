"""The layering rules of docs/architecture.md, checked on the import statements.

The core knows no backend (the factory names them by module path only), and a
backend uses nothing private of the core but the hot-path helpers: it sees the
public types and the backend interface, ``qi.base.streaming.backend``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import qi.base.streaming

_PACKAGE: Final = Path(qi.base.streaming.__file__).parent
_TESTS: Final = Path(__file__).parent
_BACKENDS: Final = "qi.base.streaming.backends"
# What a backend may import of qi.base.streaming besides its own package.
_BACKEND_MAY_USE: Final = frozenset(
    {
        "qi.base.streaming",
        "qi.base.streaming.backend",
        "qi.base.streaming._fast_values",  # the hot-path helpers (building values, timestamps)
        "qi.base.streaming._consumed_view",  # consumed messages as views over native records
    }
)


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports from, at any depth (imports inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_core_module_imports_a_backend() -> None:
    core = [*_PACKAGE.glob("*.py")]
    assert core, "no core modules found"
    offending = {
        f"{path.name} imports {module}"
        for path in core
        for module in _imports(path)
        if module.startswith(_BACKENDS)
    }
    assert not offending


def test_backends_use_only_the_interface_and_the_public_types() -> None:
    backends = sorted(path for path in (_PACKAGE / "backends").iterdir() if path.is_dir())
    assert {path.name for path in backends} >= {"memory", "confluent", "aiokafka"}
    offending: set[str] = set()
    for backend in backends:
        own = f"{_BACKENDS}.{backend.name}"
        for path in backend.rglob("*.py"):
            for module in _imports(path):
                if not module.startswith("qi.base.streaming") or module.startswith(own):
                    continue
                if module not in _BACKEND_MAY_USE:
                    offending.add(f"{backend.name}/{path.name} imports {module}")
    assert not offending


def test_the_fourth_backend_needs_nothing_but_the_interface() -> None:
    # tests/fourth_backend proves the interface is enough: it may use the public types, the
    # interface and the memory backend's public package, nothing private of either.
    allowed = {
        "qi.base",
        "qi.base.streaming",
        "qi.base.streaming.backend",
        "qi.base.streaming.backends",
    }
    used = {
        module
        for path in (_TESTS / "fourth_backend").glob("*.py")
        for module in _imports(path)
        if module.startswith("qi.")
    }
    assert used, "the fourth backend imports nothing of qi?"
    assert used <= allowed, used - allowed
