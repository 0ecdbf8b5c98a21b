"""Reading what a request asks for: the job filter of the history page and of bulk actions,
form fields, and the query strings of the pagination links."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData

from corequeue.core.states import JobState
from corequeue.store.records import JobFilter


def parse_filter(params: Any) -> tuple[JobFilter, dict[str, Any], list[str]]:
    """A JobFilter from query or form fields ``state`` (repeatable), ``queue``, ``job``, ``q``,
    ``from``, ``to`` (UTC). Returns (filter, the fields as given, problems to show)."""
    problems: list[str] = []
    states = []
    for value in params.getlist("state"):
        if value:
            try:
                states.append(JobState(value))
            except ValueError:
                problems.append(f"unknown state {value!r}")
    form: dict[str, Any] = {"state": [s.value for s in states]}
    for key in ("queue", "job", "q", "from", "to"):
        form[key] = str(params.get(key) or "").strip()
    created_after = _parse_time(form["from"], "from", problems)
    created_before = _parse_time(form["to"], "to", problems)
    filt = JobFilter(
        states=tuple(states),
        queues=(form["queue"],) if form["queue"] else (),
        names=(form["job"],) if form["job"] else (),
        search=form["q"],
        created_after=created_after,
        created_before=created_before,
    )
    return filt, form, problems


def _parse_time(text: str, name: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} = {text!r} is not a date and time (use 2024-05-01T12:00)")
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def query_string(form: Mapping[str, Any], **extra: str) -> str:
    """``?`` and the fields of ``form`` (lists repeated, empty values left out), then ``extra``."""
    pairs: list[tuple[str, str]] = []
    for key, value in form.items():
        if isinstance(value, list):
            pairs.extend((key, v) for v in value)
        elif value:
            pairs.append((key, str(value)))
    pairs.extend(extra.items())
    return "?" + urlencode(pairs) if pairs else "?"


def form_field(form: FormData | None, name: str) -> str | None:
    """The text of field ``name``, None when it is absent or a file."""
    if form is None:
        return None
    value = form.get(name)
    return value if isinstance(value, str) else None


def int_or_none(text: str | None) -> int | None:
    """``text`` as an int; None when it is empty or not a number."""
    try:
        return int(text) if text else None
    except ValueError:
        return None
