"""Every Python code block of the README runs (issue 20), in a temporary directory on SQLite.

How a block is run depends on its first line:
- ``# myapp/<module>.py``: written to that file (``myapp`` becomes a package);
- ``# tests/<file>.py``: the example application's tests, run with pytest in a copy of
  ``examples/shop`` with this block as its test module;
- anything else: a script. The scripts run in README order, as one program, after importing
  every ``myapp`` module, while a real worker (``corequeue run --import myapp.jobs``) runs, so
  ``handle.wait()`` gets its result. They share one namespace and a small prelude, which
  stands for what a block presumes of its surroundings: ``engine`` (the configured database's),
  a ``users`` table, ``insert``, ``os``, and ``app`` (an ASGI application to mount into).

A block preceded by ``<!-- readme-test: skip ... -->`` is not run (none is today).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from testing.faults import ROOT, clean_env, run_cli

BLOCK = re.compile(r"(?P<before>[^\n]*)\n+```python\n(?P<code>.*?)```", re.S)

PRELUDE = """
import os

import sqlalchemy as sa
from sqlalchemy import insert
from starlette.applications import Starlette

import corequeue

engine = corequeue.get_store().engine
users = sa.Table("users", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
users.metadata.create_all(engine)
os.environ.setdefault("QUEUE_TOKEN", "a-token-of-24-characters")
app = Starlette()
"""


def readme_blocks() -> list[tuple[str, str]]:
    """(first line, code) of every Python block that is not marked to skip."""
    text = (ROOT / "README.md").read_text()
    out = []
    for match in BLOCK.finditer(text):
        if "readme-test: skip" in match["before"]:
            continue
        code = match["code"]
        out.append((code.splitlines()[0] if code else "", code))
    return out


def test_the_readme_has_the_blocks_this_test_expects() -> None:
    firsts = [first for first, _ in readme_blocks()]
    # The README is a front page (one example); the rest, with the tests block, moved to docs/,
    # whose blocks tests/test_docs_code.py runs (the shop's tests are included there from
    # examples/shop, which nox -s examples runs).
    assert "# myapp/jobs.py" in firsts
    assert len(firsts) >= 2


def test_every_readme_code_block_runs(tmp_path: Path) -> None:
    modules, tests, scripts = [], [], []
    for first, code in readme_blocks():
        path = re.fullmatch(r"# ((?:myapp|tests)/\w+\.py)", first)
        if path and path[1].startswith("myapp/"):
            target = tmp_path / path[1]
            target.parent.mkdir(exist_ok=True)
            (target.parent / "__init__.py").touch()
            target.write_text(code)
            modules.append(path[1][:-3].replace("/", "."))
        elif path:
            tests.append(code)
        else:
            scripts.append(code)
    program = PRELUDE + "".join(f"import {m}\n" for m in modules)
    program += "\n".join(f"\n# -- README block {i}\n{code}" for i, code in enumerate(scripts))
    (tmp_path / "readme_program.py").write_text(program)

    assert run_cli(["migrate"], cwd=tmp_path).returncode == 0
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "corequeue", "run", "--import", "myapp.jobs"],
        cwd=tmp_path,
        env=clean_env({"PYTHONPATH": str(tmp_path)}),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        done = subprocess.run(
            [sys.executable, "readme_program.py"],
            cwd=tmp_path,
            env=clean_env({"PYTHONPATH": str(tmp_path)}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
    assert done.returncode == 0, done.stderr + "\n" + (tmp_path / "worker.log").read_text()

    assert len(tests) <= 1
    if tests:
        _run_readme_tests(tmp_path, tests[0])


def _run_readme_tests(tmp_path: Path, code: str) -> None:
    """The README's tests block, as the test module of a copy of examples/shop."""
    shop = tmp_path / "shop"
    shutil.copytree(ROOT / "examples" / "shop", shop, ignore=shutil.ignore_patterns("__pycache__"))
    (shop / "tests" / "test_jobs.py").write_text(code)
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=shop,
        env=clean_env(_test_env()),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "passed" in ran.stdout and "skipped" not in ran.stdout


def _test_env() -> dict[str, str]:
    """The test database settings, which clean_env drops with every COREQUEUE_ variable."""
    return {k: v for k, v in os.environ.items() if k in ("COREQUEUE_TEST_DATABASE_URL", "CI")}
