"""Job parameters as people read them (the dashboard): ``user_id=7``, ``order=Order#12``, not
the stored ``{"args": [...], "kwargs": {...}}`` with its ``{"$cq": ...}`` tagged values; and the
stored text a search for such a value looks for.

Nothing is imported or loaded: a tagged value is shown from its stored form (an ORM instance as
its model's class name and primary key). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from corequeue.core.params import TAG

#: The longest text one shown value gets (the rest is cut, with an ellipsis).
MAX_VALUE_CHARS = 200


def named_params(text: str, arg_names: Sequence[str] = ()) -> list[tuple[str, str]] | None:
    """``[(name, shown value), ...]``: positional arguments named by ``arg_names`` (the job
    class's, when known; else ``args[i]``), then keyword arguments. None when ``text`` is not
    stored parameters (the raw text is all there is to show)."""
    try:
        raw = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("args"), list):
        return None
    kwargs = raw.get("kwargs")
    if isinstance(kwargs, dict) and kwargs.get(TAG) == "dict" and isinstance(kwargs.get("v"), dict):
        kwargs = kwargs["v"]
    if not isinstance(kwargs, dict):
        return None
    out = []
    for i, value in enumerate(raw["args"]):
        name = arg_names[i] if i < len(arg_names) else f"args[{i}]"
        out.append((name, show(value)))
    out += [(str(k), show(v)) for k, v in kwargs.items()]
    return out


def show(value: Any) -> str:
    """One stored value as text: strings quoted as Python would, tagged values by type."""
    text = _show(value, 0)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _show(value: Any, depth: int) -> str:
    if depth > 20:
        return "…"
    if isinstance(value, dict):
        tag = value.get(TAG)
        if isinstance(tag, str) and set(value) == {TAG, "v"}:
            return _tagged(tag, value["v"], depth)
        items = ", ".join(f"{k!r}: {_show(v, depth + 1)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v, depth + 1) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value)


def _tagged(tag: str, v: Any, depth: int) -> str:
    if tag == "orm" and isinstance(v, dict):
        model = str(v.get("model", "?")).rpartition(".")[2]
        pk = v.get("pk")
        key = ",".join(_show(p, depth + 1) for p in pk) if isinstance(pk, list) else _show(pk, 0)
        return f"{model}#{key}"
    if tag == "dict" and isinstance(v, dict):  # a dictionary that has the tag as a key
        items = ", ".join(f"{k!r}: {_show(x, depth + 1)}" for k, x in v.items())
        return "{" + items + "}"
    if tag == "tuple" and isinstance(v, list):
        inner = ", ".join(_show(x, depth + 1) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if tag == "timedelta" and isinstance(v, list) and len(v) == 3:
        try:
            return str(timedelta(days=v[0], seconds=v[1], microseconds=v[2]))
        except (TypeError, OverflowError):
            pass
    if tag in ("datetime", "date", "time", "uuid", "decimal") and isinstance(v, str):
        return v
    return f"{tag}({_show(v, depth + 1)})"


def search_term(shown: str) -> str:
    """What to search for to find jobs holding a value :func:`show` gave: a string without its
    quotes, anything else as shown."""
    if len(shown) >= 2 and shown[0] == shown[-1] and shown[0] in "'\"":
        return shown[1:-1]
    return shown


def search_patterns(term: str) -> list[str]:
    """What the stored parameters of a job whose parameters hold ``term`` contain, for a
    substring match: ``7`` as a number or a string, ``Order#12`` as that model's key, any
    other text as a string value (or part of one)."""
    term = term.strip()
    if not term:
        return []
    model, sep, key = term.partition("#")
    if sep and model.isidentifier() and key:
        pk = key if _is_number(key) else json.dumps(key)
        return [f'.{model}","pk":[{pk}]', f'"{model}","pk":[{pk}]']
    quoted = json.dumps(term)[1:-1]  # escaped as stored, without the quotes
    if _is_number(term):
        number = json.dumps(json.loads(term))
        return [f"{p}{number}{s}" for p in "[,:" for s in ",]}"] + [f'"{quoted}"']
    return [quoted]


def _is_number(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, int | float) and not isinstance(value, bool)
