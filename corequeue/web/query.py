"""Reading what a request asks for: the job filter of the history page and of bulk actions,
ids and cursors, form bodies (urlencoded only, size capped before parsing), form fields, and the
query strings of the pagination links. Whatever a request holds, these refuse it with a reason
rather than pass on text or numbers the database cannot take."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from corequeue.core.states import JobState
from corequeue.store.records import JobFilter

#: The largest job id (a signed 64-bit column).
MAX_ID = 2**63 - 1
#: The longest filter text taken (names, queues and keys are far shorter).
MAX_FIELD = 500
#: The largest form body read, and the most fields parsed from it.
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100


class BadRequest(Exception):
    """A request the dashboard refuses: ``status`` and what to do instead."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


async def read_form(request: Request) -> FormData:
    """The urlencoded form of a POST, read only if its type and size are right. Raises
    BadRequest (415, 413, 400)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest(
            415, "Unsupported form", "Send the form as application/x-www-form-urlencoded."
        )
    length = request.headers.get("content-length", "0").strip()
    too_big = BadRequest(413, "Form too large", f"A form may hold {MAX_FORM_BYTES} bytes.")
    if not length.isascii() or not length.isdigit() or int(length) > MAX_FORM_BYTES:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise too_big
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "Invalid form", "The form is not valid UTF-8 urlencoded.") from None
    fields: list[tuple[str, str | UploadFile]] = list(pairs)
    return FormData(fields)


def job_id_of(text: object) -> int | None:
    """A job id from a path or a field: None when it is not one (no such job)."""
    value = int_or_none(str(text))
    return value if value is not None and 0 < value <= MAX_ID else None


def cursor(params: Any, name: str, problems: list[str]) -> int | None:
    """The page cursor ``name`` (a job id), None when absent; a problem when it is not one."""
    text = str(params.get(name) or "").strip()
    if not text:
        return None
    value = int_or_none(text)
    if value is None or not 0 <= value <= MAX_ID:
        problems.append(f"{name} must be a job id")
        return None
    return value


def clean_text(value: str, name: str, problems: list[str]) -> str:
    """``value`` as filter text, or "" with a problem when the database could not take it."""
    if len(value) > MAX_FIELD:
        problems.append(f"{name} is longer than {MAX_FIELD} characters")
        return ""
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        problems.append(f"{name} holds control characters")
        return ""
    return value


def parse_filter(params: Any) -> tuple[JobFilter, dict[str, Any], list[str]]:
    """A JobFilter from query or form fields ``state`` (repeatable), ``queue``, ``job``, ``q``,
    ``param`` (a parameter's value), ``from``, ``to`` (UTC). Returns (filter, the fields as
    given, problems to show)."""
    problems: list[str] = []
    states = []
    for value in params.getlist("state")[:20]:
        if value:
            try:
                states.append(JobState(value))
            except ValueError:
                problems.append(f"unknown state {value[:40]!r}")
    form: dict[str, Any] = {"state": [s.value for s in states]}
    for key in ("queue", "job", "q", "param", "from", "to"):
        form[key] = clean_text(str(params.get(key) or "").strip(), key, problems)
    created_after = _parse_time(form["from"], "from", problems)
    created_before = _parse_time(form["to"], "to", problems)
    filt = JobFilter(
        states=tuple(states),
        queues=(form["queue"],) if form["queue"] else (),
        names=(form["job"],) if form["job"] else (),
        search=form["q"],
        param=form["param"],
        created_after=created_after,
        created_before=created_before,
    )
    return filt, form, problems


def _parse_time(text: str, name: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        problems.append(f"{name} = {text[:40]!r} is not a date and time (use 2024-05-01T12:00)")
        return None


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
    """``text`` as an int (ASCII digits, at most 19); None when it is empty or not one."""
    text = (text or "").strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    return int(text)
