"""Sessions: lint, typecheck, tests, serial, examples, django, django6, webapps, docs (the
default set, what CI runs), bench.

They run in the current environment (install it first: pip install -e '.[test,dev]'), so a
new checkout needs one virtualenv, not one per session; django, webapps and docs install their
extra into it. django6 alone builds a virtualenv of its own, on Python 3.12 (Django 6 needs it).
"""

from __future__ import annotations

import os
import shutil
import sys

import nox

nox.options.sessions = [
    "lint",
    "typecheck",
    "tests",
    "serial",
    "examples",
    "django",
    "django6",
    "webapps",
    "docs",
]
nox.options.default_venv_backend = "none"

PY = sys.executable
#: Django 6 needs Python 3.12+: pyenv's, or python3.12 on PATH.
PY312 = os.environ.get("COREQUEUE_PY312", "/root/.pyenv/versions/3.12.1/bin/python3.12")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the package."""
    session.run(PY, "-m", "mypy")


#: pytest-xdist workers for the tests session. Most tests wait on real worker processes and
#: their timers, not on the CPU, so more workers than cores pays (the README says how much).
TEST_WORKERS = os.environ.get("COREQUEUE_TEST_WORKERS", "4")
#: Tests that must not run beside others (one restarts the shared PostgreSQL server).
SERIAL = "serial"


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite on SQLite and PostgreSQL, in parallel workers (pytest-xdist; each worker
    has its own PostgreSQL database), except the tests marked serial."""
    parallel = ("-n", TEST_WORKERS, "--dist", "worksteal")
    session.run(PY, "-m", "pytest", *parallel, "-m", f"not {SERIAL}", *session.posargs)


@nox.session
def serial(session: nox.Session) -> None:
    """The tests marked serial, alone, in one process (run after the tests session)."""
    session.run(PY, "-m", "pytest", "-m", SERIAL, *session.posargs)


@nox.session
def examples(session: nox.Session) -> None:
    """The example application's own tests, using only the installed pytest plugin."""
    session.chdir("examples/shop")
    session.run(PY, "-m", "pytest", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against the peers (installs them): see benchmarks/README.md."""
    session.run(PY, "-m", "pip", "install", "-q", "-e", ".[bench]")
    session.run(PY, "-m", "benchmarks", *session.posargs)


@nox.session
def django(session: nox.Session) -> None:
    """The Django backend (corequeue.contrib.django) on Django 5.2 with django-tasks 0.12: the
    example project's tests and django-tasks' own TaskTestCase."""
    session.run(PY, "-m", "pip", "install", "-q", "-e", ".[django]")
    session.chdir("examples/django_project")
    session.run(PY, "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session(venv_backend="venv", python=PY312 if os.path.exists(PY312) else "3.12")
def django6(session: nox.Session) -> None:
    """The Django backend on Django 6 (django.tasks), Python 3.12: the example project's tests."""
    session.install("-q", "-e", ".[django,postgres]", "pytest>=8")
    session.chdir("examples/django_project")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def webapps(session: nox.Session) -> None:
    """The FastAPI and Flask recipes' tests (examples/fastapi_app, examples/flask_app)."""
    session.run(PY, "-m", "pip", "install", "-q", "-e", ".[examples]")
    for app in ("fastapi_app", "flask_app"):
        with session.chdir(f"examples/{app}"):
            session.run(PY, "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strict (a warning fails it)."""
    session.run(PY, "-m", "pip", "install", "-q", "-e", ".[docs]")
    env = {"NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner, not a build warning
    session.run(PY, "-m", "mkdocs", "build", "--strict", "--site-dir", "site", env=env)
    shutil.rmtree("site", ignore_errors=True)
