"""The documentation site (docs/) stays true: every Python block in it runs, its diagram comes
from the transition table, and its reference names every command and setting.

How a page's Python blocks run depends on each block's first line:
- ``# myapp/<module>.py``: written to that file (``myapp`` becomes a package);
- ``# tests/<file>.py``: a test module, run with pytest (on SQLite) beside those modules;
- ``--8<-- "path"`` lines only: a file of the repository included by pymdownx.snippets (the
  examples' code, run by their own tests): the file must exist;
- anything else: a script. A page's scripts run in page order, as one program, in a temporary
  directory on SQLite (``corequeue migrate`` first), after importing the page's ``myapp``
  modules; when one waits for a result (``.wait(``), a real worker runs meanwhile
  (``corequeue run --import`` each module).

A block preceded by ``<!-- docs-test: skip (why) -->`` is not run: pure configuration only.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corequeue.cli import build_parser
from corequeue.config import Settings
from corequeue.core.lifecycle import mermaid_diagram
from testing.faults import ROOT, clean_env, run_cli

DOCS = ROOT / "docs"
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", re.S)
SNIPPET = re.compile(r'--8<-- "(?P<path>[^"]+)"')
MODULE = re.compile(r"# ((?:myapp|tests)/\w+\.py)")

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
#: At most this many blocks may be skipped (configuration only).
MAX_SKIPPED = 3


@dataclasses.dataclass
class Page:
    path: Path
    modules: dict[str, str] = dataclasses.field(default_factory=dict)  # file -> code
    tests: dict[str, str] = dataclasses.field(default_factory=dict)
    scripts: list[str] = dataclasses.field(default_factory=list)
    snippets: list[str] = dataclasses.field(default_factory=list)
    skipped: int = 0


def read_page(path: Path) -> Page:
    page = Page(path)
    for match in BLOCK.finditer(path.read_text()):
        code = match["code"]
        first = code.splitlines()[0] if code else ""
        if "docs-test: skip" in match["before"]:
            page.skipped += 1
        elif code.strip() and all(SNIPPET.fullmatch(x) for x in code.strip().splitlines()):
            page.snippets += [SNIPPET.fullmatch(x)["path"] for x in code.strip().splitlines()]  # type: ignore[index]
        elif (module := MODULE.fullmatch(first)) and module[1].startswith("myapp/"):
            page.modules[module[1]] = code
        elif module:
            page.tests[module[1]] = code
        else:
            page.scripts.append(code)
    return page


PAGES = [read_page(p) for p in sorted(DOCS.rglob("*.md"))]
RUNNABLE = [p for p in PAGES if p.scripts or p.tests]


def test_the_docs_have_the_blocks_this_test_expects() -> None:
    assert len(RUNNABLE) >= 5
    assert sum(len(p.scripts) + len(p.tests) + len(p.modules) for p in PAGES) >= 15
    assert sum(p.skipped for p in PAGES) <= MAX_SKIPPED


def test_every_included_file_exists() -> None:
    included = [s for p in PAGES for s in p.snippets]
    assert len(included) >= 8
    for path in included:
        assert (ROOT / path).is_file(), path


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.path.relative_to(DOCS)) for p in RUNNABLE])
def test_the_python_blocks_of_each_page_run(page: Page, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(tmp_path)}
    for file, code in {**page.modules, **page.tests}.items():
        target = tmp_path / file
        target.parent.mkdir(exist_ok=True)
        (target.parent / "__init__.py").touch()
        target.write_text(code)
    modules = [m[:-3].replace("/", ".") for m in page.modules]
    # As in the docs' projects: the workers import the page's modules (tool.corequeue imports).
    listed = ", ".join(f'"{m}"' for m in modules)
    (tmp_path / "pyproject.toml").write_text(f"[tool.corequeue]\nimports = [{listed}]\n")
    assert run_cli(["migrate"], cwd=tmp_path, env=env).returncode == 0
    if page.scripts:
        program = "".join(f"import {m}\n" for m in modules)
        program += "\n".join(f"\n# -- block {i}\n{code}" for i, code in enumerate(page.scripts))
        (tmp_path / "docs_program.py").write_text(program)
        needs_worker = any(".wait(" in code for code in page.scripts)
        _run_program(tmp_path, env, modules if needs_worker else None)
    if page.tests:
        ran = subprocess.run(
            [*PYTEST, "--corequeue-db=sqlite", "--rootdir", str(tmp_path), "tests"],
            cwd=tmp_path,
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "passed" in ran.stdout and "skipped" not in ran.stdout


def _run_program(cwd: Path, env: dict[str, str], worker_imports: list[str] | None) -> None:
    """Run docs_program.py, with a real worker meanwhile when ``worker_imports`` is given."""
    worker = None
    log_path = cwd / "worker.log"
    if worker_imports is not None:
        imports = [arg for m in worker_imports for arg in ("--import", m)]
        with log_path.open("w") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "corequeue", "run", *imports],
                cwd=cwd,
                env=clean_env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    try:
        done = subprocess.run(
            [sys.executable, "docs_program.py"],
            cwd=cwd,
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    log = log_path.read_text() if log_path.exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + "\n" + log


def test_the_lifecycle_diagram_is_drawn_from_the_transition_table() -> None:
    page = (DOCS / "explanation" / "lifecycle.md").read_text()
    assert f"```mermaid\n{mermaid_diagram()}\n```" in page


def test_the_command_reference_names_every_command() -> None:
    page = (DOCS / "reference" / "cli.md").read_text()
    sub = next(a for a in build_parser()._actions if a.choices and "run" in a.choices)
    assert sub.choices is not None
    missing = [name for name in sub.choices if f"## corequeue {name}\n" not in page]
    assert not missing, f"docs/reference/cli.md has no section for: {missing}"


def test_the_settings_reference_names_every_setting() -> None:
    page = (DOCS / "reference" / "settings.md").read_text()
    names = [f.name for f in dataclasses.fields(Settings) if f.name != "config_file"]
    missing = [name for name in names if f"| `{name}` |" not in page]
    assert not missing, f"docs/reference/settings.md has no row for: {missing}"
