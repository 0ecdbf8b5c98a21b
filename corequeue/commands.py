"""What every ``corequeue`` command shares: the parser class, the common options, settings from
flags, importing the job modules, opening the store and printing results.

The modules that add commands of their own (the scheduler, the dashboard, the benchmark) import
this module; :mod:`corequeue.cli` imports them, so imports run one way.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from corequeue import runtime
from corequeue.config import Settings, load_settings
from corequeue.core.errors import ConfigError
from corequeue.core.text import lines
from corequeue.store.queries import Store


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one clear line (exit status 2)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan``, ``inf`` and overflowing ones are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r:.40} is not a finite number")
    return value


def int_between(low: int, high: int) -> Any:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r:.40} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text:.40} is not between {low} and {high}")
        return value

    parse.__name__ = "integer"
    return parse


#: Job ids: the jobs table's id column is a 64-bit integer.
job_id = int_between(1, 2**63 - 1)


def add_common_options(
    p: argparse.ArgumentParser,
    *,
    json_flag: bool = True,
    import_help: str = "module that registers jobs (repeatable; default: the imports setting)",
) -> None:
    """--database-url, --config, --import (and --json): the options of every command."""
    p.add_argument("--database-url", help="database URL (default from config, else SQLite)")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help=import_help,
    )
    if json_flag:
        p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument(  # also here, so that it may follow the subcommand
        "--log-level",
        default=argparse.SUPPRESS,
        choices=LOG_LEVELS,
        help="how much to log: DEBUG, INFO, WARNING or ERROR (default INFO)",
    )


#: The help of ``--config`` and ``--json`` (also for commands that add them on their own).
CONFIG_HELP = "pyproject.toml to read [tool.corequeue] from (default: ./pyproject.toml, if any)"
JSON_HELP = "machine-readable output: JSON (default: text for people)"

#: The levels of ``--log-level`` (default INFO).
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def settings_from(args: argparse.Namespace, **more: Any) -> Settings:
    """The settings for a command: configuration file and environment, then its flags (flags
    left unset do not override). Raises ConfigError."""
    overrides = {"database_url": getattr(args, "database_url", None)}
    overrides["imports"] = getattr(args, "imports", None)
    overrides.update(more)
    return load_settings(getattr(args, "config", None), overrides=overrides)


def import_modules(modules: Sequence[str]) -> None:
    """Import the modules that register jobs. Raises ConfigError naming the one that fails."""
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a module that fails while importing, not only a missing one
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(
                f"cannot import module {module!r} (--import / imports): "
                f"{type(exc).__name__}: {first}".rstrip(": ")
            ) from None


def open_store(settings: Settings) -> Store:
    """Configure this process for ``settings``' database and middleware. Returns the store."""
    return runtime.configure(settings.database_url, middleware=settings.middleware)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``, control characters escaped in
    each of its lines (text from jobs could hold escape sequences for the terminal)."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(lines(text))
