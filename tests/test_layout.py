"""The package's shape, as the README's code map states it: small modules and functions, imports
that run one way with no cycles, and SQL only inside ``corequeue/store``.

These read the source (ast), so they hold for every module, imported by a test or not."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import corequeue

PACKAGE = Path(corequeue.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60

#: SQLAlchemy modules that only the store may import: the SQL constructs, the ORM's session and
#: the dialects. Naming an ``Engine`` or a ``URL`` (types callers pass around) is fine anywhere.
SQL_MODULES = ("sqlalchemy.sql", "sqlalchemy.orm", "sqlalchemy.dialects", "sqlalchemy.ext")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) for each import in ``path``, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, base, [a.name for a in node.names]


def module_imports(path: Path) -> Iterator[str]:
    """The corequeue modules ``path`` imports, wherever the import sits (module level or inside
    a function: a deferred import still ties the two modules together), except under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    known = {module_name(p) for p in MODULES}
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = targets or [base]
        elif (  # importlib.import_module("corequeue.x"): an import all the same
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        else:
            continue
        yield from (t for t in targets if t in known)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_short(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines; split it by responsibility"


def test_functions_are_short() -> None:
    long = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module_name(path)}.{node.name}: {length} lines")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_no_import_cycles() -> None:
    graph = {module_name(p): set(module_imports(p)) for p in MODULES}
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep == node or dep == node.rpartition(".")[0]:
                continue  # a package importing its own submodule, or a module its package
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_sql_only_in_the_store() -> None:
    found = []
    for path in MODULES:
        name = module_name(path)
        if name.startswith("corequeue.store"):
            continue
        for line, module, names in imports(path):
            if module == "sqlalchemy" and any(n not in ("URL", "Engine") for n in names or ["*"]):
                found.append(f"{name}:{line} imports sqlalchemy ({', '.join(names) or 'module'})")
            elif module.startswith(SQL_MODULES):
                found.append(f"{name}:{line} imports {module}")
            elif module.startswith("corequeue.store") and any(n.startswith("_") for n in names):
                found.append(f"{name}:{line} imports a store private ({', '.join(names)})")
    assert not found, "SQL outside corequeue/store:\n" + "\n".join(found)


def test_no_store_privates_used_outside_the_store() -> None:
    found = []
    for path in MODULES:
        name = module_name(path)
        if name.startswith("corequeue.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Attribute | ast.Name)
                and (getattr(node.value, "attr", None) or getattr(node.value, "id", "")) == "store"
            ):
                found.append(f"{name}:{node.lineno} uses store.{node.attr}")
    assert not found, "store privates used outside the store:\n" + "\n".join(found)
