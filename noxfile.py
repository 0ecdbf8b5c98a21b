"""Sessions: lint, typecheck, tests, examples (the default set, what CI runs), bench.

They run in the current environment (install it first: pip install -e '.[test,dev]'), so a
new checkout needs one virtualenv, not one per session.
"""

from __future__ import annotations

import sys

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "examples"]
nox.options.default_venv_backend = "none"

PY = sys.executable


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the package."""
    session.run(PY, "-m", "mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on SQLite and PostgreSQL."""
    session.run(PY, "-m", "pytest", *session.posargs)


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
