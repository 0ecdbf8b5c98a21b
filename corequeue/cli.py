"""The ``corequeue`` command's entry point (``corequeue ...``, ``python -m corequeue ...``).

It imports next to nothing itself. For ``corequeue run`` it first starts the worker's fork
server (executor.server), so that the server's imports (the children's code and the
application's modules) run beside this process's own (the store, SQLAlchemy, the worker, the
other commands), on another CPU, rather than after them; then it hands over to
:mod:`corequeue.command_line`, the parser and the subcommands, which report any bad flag or
setting. Reading the flags here is a forecast: when it cannot tell, the server starts later,
as before (``cmd_run``), and children forked from a server that did not import a module import
it themselves.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``corequeue`` command with ``argv`` (default: this process's arguments)."""
    forecast = run_forecast(sys.argv[1:] if argv is None else list(argv))
    if forecast is not None:
        from corequeue.executor import server

        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")  # as commands.import_modules does: the server sees the same
        server.start_early(*forecast)
    from corequeue import command_line

    return command_line.main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``corequeue`` command and all its subcommands."""
    from corequeue import command_line

    return command_line.build_parser()


class _Forecast(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def run_forecast(argv: Sequence[str]) -> tuple[tuple[str, ...], str] | None:
    """(the modules, the database URL) a ``corequeue run`` command line will use: its
    --import flags, else the imports setting (corequeue.contrib.django first with
    --django-settings), and its --database-url, else the setting. None: not a ``run`` command,
    a request for help, or flags or settings that the full parser will refuse. Sets
    COREQUEUE_DJANGO_SETTINGS as ``run`` does, for the server to inherit."""
    from corequeue.config import load_settings
    from corequeue.core.errors import ConfigError

    args = list(argv)
    while args and args[0].startswith("--log-level"):  # the one option before the command
        del args[: 1 if "=" in args[0] else 2]
    if not args or args[0] != "run" or "-h" in args or "--help" in args:
        return None
    forecast = _Forecast(add_help=False, allow_abbrev=False)
    forecast.add_argument("--import", dest="imports", action="append", default=[])
    forecast.add_argument("--config")
    forecast.add_argument("--database-url")
    forecast.add_argument("--django-settings")
    try:
        known: Any = forecast.parse_known_args(args[1:])[0]
        overrides = {"imports": known.imports, "database_url": known.database_url}
        settings = load_settings(known.config, overrides=overrides)
    except (ValueError, ConfigError, OSError):
        return None
    if not known.django_settings:
        return settings.imports, settings.database_url
    os.environ["COREQUEUE_DJANGO_SETTINGS"] = known.django_settings
    return ("corequeue.contrib.django", *settings.imports), settings.database_url
