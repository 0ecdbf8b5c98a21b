"""Jobs as the command line shows them to people: the job names they type (aliases, unique
suffixes), and parameters and results as plain JSON values under their parameter names.
(Refused actions are said in people's terms by corequeue.core.display.refusal.)"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Sequence
from typing import Any

from corequeue import registry
from corequeue.core.errors import ConfigError
from corequeue.core.params import TAG
from corequeue.store.records import JobRecord


def job_names(typed: Sequence[str]) -> tuple[str, ...]:
    """The registry names for what was typed after ``--job``: a full name, an alias, or a
    unique suffix of a name registered here (``ChargeCard``, ``jobs.ChargeCard``); anything
    else as typed (the database may hold jobs of modules not imported here). Raises
    ConfigError for a suffix that matches several jobs."""
    known = registry.registered()
    out = []
    for text in typed:
        name = registry.canonical_name(text)
        if name not in known:
            matches = sorted(n for n in known if n.endswith("." + text))
            if len(matches) > 1:
                raise ConfigError(
                    f"--job {text!r} matches several jobs ({', '.join(matches)}): give more "
                    "of the name"
                )
            if matches:
                name = matches[0]
        out.append(name)
    return tuple(out)


def plain(value: Any) -> Any:
    """A stored JSON value without corequeue's type tags: a Decimal, datetime or UUID shows
    as its text, a tagged dictionary as a dictionary."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        if TAG in value and set(value) == {TAG, "v"}:
            return plain(value["v"])
        return {k: plain(v) for k, v in value.items()}
    return value


def named_params(name: str, params: str) -> dict[str, Any]:
    """A job's stored parameters as ``{parameter name: JSON value}`` when this process knows
    the job's signature; positional arguments it cannot name go under ``"args"``."""
    try:
        raw = json.loads(params)
        args, kwargs = list(raw["args"]), dict(raw["kwargs"])
    except (ValueError, KeyError, TypeError):
        return {"unreadable": params}
    out: dict[str, Any] = {}
    names = _arg_names(name)
    for i, value in enumerate(args):
        if i < len(names):
            out[names[i]] = plain(value)
        else:
            out.setdefault("args", []).append(plain(value))
    out.update({k: plain(v) for k, v in kwargs.items()})
    return out


def _arg_names(name: str) -> list[str]:
    cls = registry.registered().get(registry.canonical_name(name))
    if cls is None:
        return []
    func, skip_first = cls.parameters_of()
    try:
        params = list(inspect.signature(func).parameters.values())[skip_first:]
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


def job_json(job: JobRecord) -> dict[str, Any]:
    """A job for ``--json``: its fields, with parameters named and the result a JSON value."""
    data = job.as_dict()
    data["params"] = named_params(job.name, job.params)
    if job.result is not None:
        with contextlib.suppress(ValueError):
            data["result"] = plain(json.loads(job.result))
    return data
