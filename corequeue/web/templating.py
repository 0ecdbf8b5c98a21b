"""The dashboard's Jinja2 set-up: the template and static folders, autoescaping, strict
undefined names, and the filters the templates use to show times, durations and stored JSON."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.templating import Jinja2Templates

from corequeue.core import uniqueness
from corequeue.core.display import search_term
from corequeue.core.states import JobState

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def make_templates() -> Jinja2Templates:
    """The templates with their filters (``ts``, ``secs``, ``pretty``) and globals (``states``)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=show_controls,
    )
    env.filters.update(ts=format_ts, secs=format_seconds, pretty=pretty_json)
    env.filters.update(search_term=search_term, unique_until=uniqueness.describe)
    env.globals.update(states=list(JobState))
    return Jinja2Templates(env=env)


#: Characters that reorder or hide the text around them: bidirectional controls (U+202E
#: shows "\u202etxt.exe" as "exe.txt"), zero-width ones, and the C0/C1 controls a terminal
#: would act on.
_CONTROLS = re.compile(
    "[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
    "\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def show_controls(value: Any) -> Any:
    """Every value a template prints (user text included) with its invisible and reordering
    characters shown as ``[U+202E]`` instead of acting on the page (safe markup stays safe:
    the marker holds nothing HTML reads)."""
    if isinstance(value, str) and _CONTROLS.search(value):
        shown = _CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
        return Markup(shown) if isinstance(value, Markup) else shown
    return value


def format_ts(value: datetime | None, with_seconds: bool = True) -> str:
    """A UTC date and time to the second (or the minute), a dash for None."""
    if value is None:
        return "—"
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M")


def format_seconds(value: float | None) -> str:
    """Short human duration: 850 ms, 12.3 s, 4 min 10 s, 3 h 5 min, 2 d 4 h."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def pretty_json(text: str | None) -> str:
    """Stored JSON, indented for reading (as-is when it is not JSON)."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return text
