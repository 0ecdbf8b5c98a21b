"""The job registry: names stored in the database <-> Job classes.

It holds classes and never needs the Job class itself: :mod:`corequeue.jobs` (which defines
``register_job``) imports this module, not the other way round."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from corequeue.core.errors import UnknownJobError

if TYPE_CHECKING:
    from corequeue.jobs import Job

_JOBS: dict[str, type[Job]] = {}
_ALIASES: dict[str, str] = {}
#: The packages whose modules :func:`resolve` may import (None: any module). A worker sets it
#: to its configured imports: a row naming any other module is unknown, never imported.
_IMPORTABLE: tuple[str, ...] | None = None


def limit_imports(packages: Sequence[str] | None) -> None:
    """Let :func:`resolve` import only modules under ``packages`` (a module or a package and
    everything under it); None lifts the limit."""
    global _IMPORTABLE
    _IMPORTABLE = None if packages is None else tuple(packages)


def importable(module: str) -> bool:
    """Whether :func:`resolve` may import ``module`` (see :func:`limit_imports`)."""
    if _IMPORTABLE is None:
        return True
    return any(module == p or module.startswith(p + ".") for p in _IMPORTABLE)


def job_name(cls: type[Job]) -> str:
    """The registry name of a job class: ``module.QualName``.

    A class in a module run with ``python -m pkg.mod`` is named after ``pkg.mod``, the name
    a worker imports it by. Raises TypeError for a class in a script run directly.
    """
    module = cls.__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is None or not spec.name or spec.name == "__main__":
            raise TypeError(
                f"{cls.__qualname__} is defined in a script run directly, which workers cannot "
                "import: define job classes in an importable module"
            )
        module = spec.name
    return f"{module}.{cls.__qualname__}"


def add(cls: type[Job], *, alias: str | None = None) -> None:
    """Register ``cls`` under its name (and ``alias``). :func:`corequeue.register_job` checks
    that it is a Job subclass first. Raises TypeError for a class workers cannot import,
    ValueError for an alias that already names another job."""
    name = job_name(cls)
    if "<locals>" in name:
        raise TypeError(
            f"{name} is defined inside a function: workers cannot import it. "
            "Define job classes at module level."
        )
    _JOBS[name] = cls
    if alias is not None:
        taken = _ALIASES.get(alias)
        if taken is not None and taken != name:
            raise ValueError(f"job alias {alias!r} already names {taken}")
        _ALIASES[alias] = name


def is_registered(cls: type[Job]) -> bool:
    return _JOBS.get(job_name(cls)) is cls


def canonical_name(name: str) -> str:
    """The registry name for ``name``, which may be an alias."""
    return _ALIASES.get(name, name)


def resolve(name: str) -> type[Job]:
    """The Job class registered as ``name`` (or alias), importing its module when needed.

    Raises UnknownJobError with what to do when no such job can be found.
    """
    name = canonical_name(name)
    cls = _JOBS.get(name)
    if cls is not None:
        return cls
    module, _, _ = name.rpartition(".")
    while module and importable(module):
        try:
            importlib.import_module(module)
            break
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            module, _, _ = module.rpartition(".")
    cls = _JOBS.get(canonical_name(name))
    if cls is None:
        raise UnknownJobError(
            f"no job is registered as {name!r}: make sure the module that defines it is "
            "importable by the worker (--import MODULE, or `imports` in [tool.corequeue]) "
            "and that the class is decorated with @register_job" + _limit_note(name)
        )
    return cls


def _limit_note(name: str) -> str:
    module = name.rpartition(".")[0]
    if importable(module):
        return ""
    return (
        f" (this worker imports only modules under its imports {list(_IMPORTABLE or ())}:"
        f" add {module!r} to them if it should run this job)"
    )


def registered() -> dict[str, type[Job]]:
    """All registered jobs by name (a copy)."""
    return dict(_JOBS)
