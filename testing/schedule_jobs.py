"""Jobs that scheduler tests enqueue on a schedule (``--import testing.schedule_jobs``), and
the ``pyproject.toml`` that declares schedules for worker processes started in a test's directory.

Nothing here declares a schedule: importing this module in the test process must not add
schedules to every later ``load_definitions`` call. ``tests.scheduler.python_schedules``
declares one with :func:`corequeue.schedule` for worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corequeue import Job, register_job


@register_job(alias="tick")
class Tick(Job):
    """Does nothing but return its key."""

    def __init__(self, key: str):
        self.key = key

    def run(self) -> str:
        return self.key


@register_job
class Report(Job):
    """A job with a keyword parameter, for schedules that pass args and kwargs."""

    def __init__(self, kind: str, *, pages: int = 1):
        self.kind = kind
        self.pages = pages

    def run(self) -> dict[str, object]:
        return {"kind": self.kind, "pages": self.pages}


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def write_pyproject(directory: Path, schedules: dict[str, dict[str, Any]]) -> None:
    """Write ``directory/pyproject.toml`` importing this module and declaring ``schedules``
    (name -> the keys of its ``[tool.corequeue.schedule.NAME]`` table)."""
    lines = ["[tool.corequeue]", 'imports = ["testing.schedule_jobs"]', ""]
    for name, table in schedules.items():
        lines.append(f'[tool.corequeue.schedule."{name}"]')
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    (directory / "pyproject.toml").write_text("\n".join(lines))
