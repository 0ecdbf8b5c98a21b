"""Every option of every ``corequeue`` command and subcommand says in ``--help`` what it does
and its default (issue 20): the test walks the whole argparse tree, so a command added later
is held to the same rule without being listed here."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from corequeue.cli import build_parser


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, argparse.Action]]:
    """(command words, parser, action) for every argument of ``parser`` and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sub in action.choices.items():
                yield from walk(sub, (*path, word))
        elif not isinstance(action, argparse._HelpAction):
            yield path, parser, action


def shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as ``--help`` prints it (``%(default)s`` and the like filled in)."""
    return parser._get_formatter()._expand_help(action) if action.help else ""


def stated(default: object) -> str | None:
    """How a default should appear in the help: numbers and words as written; None for
    defaults that have no one spelling (off, nothing, empty lists)."""
    if isinstance(default, bool) or default in (None, [], argparse.SUPPRESS):
        return None
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def test_the_walk_reaches_every_command() -> None:
    commands = {path for path, _, _ in walk(build_parser())}
    for expected in [
        (),
        ("run",),
        ("enqueue",),
        ("stats",),
        ("prune",),
        ("migrate",),
        ("dashboard",),
        ("bench",),
        ("schedules",),
        ("queues",),
        *(("jobs", action) for action in ("list", "show", "retry", "cancel", "delete")),
    ]:
        assert expected in commands


def test_every_option_says_what_it_does_and_its_default() -> None:
    problems = []
    for path, parser, action in walk(build_parser()):
        where = " ".join(["corequeue", *path, *(action.option_strings[:1] or [action.dest])])
        text = shown_help(parser, action)
        if len(text) < 8:
            problems.append(f"{where}: no help saying what it does ({text!r})")
            continue
        takes_default = bool(action.option_strings) or (
            action.nargs == "?" and action.default is not None
        )
        if takes_default and "default" not in text:
            problems.append(f"{where}: the help does not state the default: {text!r}")
        value = stated(action.default)
        if takes_default and value is not None and value not in text:
            problems.append(f"{where}: the default is {value!r} but the help says {text!r}")
    assert not problems, "\n".join(problems)


def test_help_of_every_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    commands = {path for path, _, _ in walk(build_parser()) if path}
    for path in sorted(commands):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*path, "--help"])
        assert exited.value.code == 0, path
        assert capsys.readouterr().out.startswith("usage: corequeue " + " ".join(path))
