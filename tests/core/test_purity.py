"""corequeue.core decides and never acts: no database, no executor, no clock, no processes,
no randomness, no sockets, no threads. This test reads the source of every core module and
checks what it imports, wherever the import sits (module level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import corequeue.core

CORE = Path(corequeue.core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))

#: Top-level modules (and corequeue subpackages) that corequeue.core must not import.
BANNED = {
    "corequeue.store": "the store adapter",
    "corequeue.executor": "the process pool",
    "corequeue.worker": "the worker loop",
    "corequeue.runtime": "process-wide configuration",
    "sqlalchemy": "the database",
    "psycopg": "the database",
    "sqlite3": "the database",
    "time": "the clock (take `now` as an argument)",
    "os": "the operating system",
    "subprocess": "processes",
    "multiprocessing": "processes",
    "signal": "processes",
    "random": "randomness (take a random value as an argument)",
    "secrets": "randomness (take a random value as an argument)",
    "socket": "the network",
    "threading": "threads",
    "asyncio": "an event loop",
    "importlib": "dynamic imports (which would slip past this test)",
    "logging": "I/O",
}


def imported_names(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the module imports, relative imports resolved."""
    package = module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            # `from corequeue import store` imports corequeue.store.
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
            found.append((node.lineno, base))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            found.append((node.lineno, "importlib"))
    return found


def banned_reason(name: str) -> str | None:
    for banned, reason in BANNED.items():
        if name == banned or name.startswith(banned + "."):
            return reason
    return None


def test_the_core_has_modules_to_check() -> None:
    names = {path.stem for path in MODULES}
    assert {"lifecycle", "params", "retry", "states", "errors"} <= names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_core_module_imports_nothing_impure(path: Path) -> None:
    module = "corequeue.core." + path.relative_to(CORE).with_suffix("").as_posix().replace("/", ".")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offences = [
        f"{path.name}:{line} imports {name} ({reason})"
        for line, name in imported_names(tree, module)
        if (reason := banned_reason(name)) is not None
    ]
    assert offences == []


@pytest.mark.parametrize(
    ("source", "offence"),
    [
        ("import time", "time"),
        ("import os.path", "os.path"),
        ("from sqlalchemy.orm import Session", "sqlalchemy.orm"),
        ("from corequeue import store", "corequeue.store"),
        ("from ..store import queries", "corequeue.store"),
        ("def f():\n    import random\n", "random"),
        ("threading = __import__('threading')", "importlib"),
    ],
)
def test_the_checker_catches_every_form_of_import(source: str, offence: str) -> None:
    names = [name for _, name in imported_names(ast.parse(source), "corequeue.core.x")]
    assert offence in names
    assert any(banned_reason(name) for name in names)


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import UTC, datetime",
        "from zoneinfo import ZoneInfo",
        "import croniter",
        "from corequeue.core.errors import ConfigError",
        "from .states import JobState",
        "import json, math, re",
    ],
)
def test_the_checker_allows_pure_imports(source: str) -> None:
    names = [name for _, name in imported_names(ast.parse(source), "corequeue.core.x")]
    assert not any(banned_reason(name) for name in names)
