"""Jobs as people read them. Parameters (the dashboard): ``user_id=7``, ``order=Order#12``, not
the stored ``{"args": [...], "kwargs": {...}}`` with its ``{"$cq": ...}`` tagged values; and the
stored text a search for such a value looks for. And the one wording of a person's refused
action (:func:`refusal`) and of a missing job (:func:`missing_job`), for the command line,
the dashboard and the Python API alike.

Nothing is imported or loaded: a tagged value is shown from its stored form (an ORM instance as
its model's class name and primary key). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from corequeue.core.params import TAG
from corequeue.core.states import JobState

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


# -- a person's refused action, in their terms -------------------------------------------------

#: What a job in each state is doing, as a sentence says it ("job 7 is running").
_STATE_PHRASES = {
    JobState.REQUESTED: "is waiting to run",
    JobState.RUNNING: "is running",
    JobState.SUCCEEDED: "has succeeded",
    JobState.FAILED: "has failed",
    JobState.CANCELLED: "is cancelled",
}


def missing_job(job_id: int) -> str:
    """Why there is no job ``job_id`` to act on or read."""
    return (
        f"no job with id {job_id}: it was deleted or pruned, or the transaction that "
        "enqueued it was rolled back"
    )


def refusal(job_id: int, action: str, state: JobState | None) -> str:
    """Why a person's ``action`` (``cancel``, ``retry`` or ``delete``) cannot be done to job
    ``job_id`` in ``state`` (None: there is no such job), and what to do instead: "job 29 is
    already cancelled", not the lifecycle's "cannot take event"."""
    if state is None:
        return missing_job(job_id)
    phrase = _STATE_PHRASES.get(state)
    if phrase is None:  # a state this version does not know (a newer version's row)
        return (
            f"job {job_id} is in a state this version of corequeue does not know "
            f"({state.value!r}): it cannot be {_past(action)} from here"
        )
    if action == "cancel" and state.is_final:
        already = phrase.replace("is ", "is already ").replace("has ", "has already ")
        return f"job {job_id} {already}: only waiting or running jobs can be cancelled"
    if action == "retry":
        advice = {
            JobState.SUCCEEDED: "enqueue it again instead",
            JobState.REQUESTED: "it has not run yet",
            JobState.RUNNING: "wait for it to end, or cancel it first",
        }.get(state, "")
        return f"job {job_id} {phrase}: only failed or cancelled jobs can be retried" + (
            f" ({advice})" if advice else ""
        )
    if action == "delete":
        return f"job {job_id} {phrase}: cancel it first, then delete it"
    return f"job {job_id} {phrase}: it cannot be {_past(action)} now"


def _past(action: str) -> str:
    return {"cancel": "cancelled", "retry": "retried", "delete": "deleted"}.get(
        action, f"given {action!r}"
    )
