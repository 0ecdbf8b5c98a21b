"""The dashboard's actions on jobs: retry, cancel and delete, one job at a time or in bulk.

Which action applies to a job in which state is the core's decision
(:func:`corequeue.core.lifecycle.actions_for`); this module only offers what it allows and asks
the store, which re-checks the state as it writes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from corequeue.core.display import missing_job
from corequeue.core.errors import CorequeueError, JobNotFound
from corequeue.core.lifecycle import Action, actions_for
from corequeue.core.states import JobState
from corequeue.store.records import JobFilter, JobRecord
from corequeue.web.dashboard import Context, Dashboard
from corequeue.web.query import form_field, job_id_of, parse_filter, query_string

#: The actions the dashboard offers, in the order its buttons show them.
ACTIONS = (Action.RETRY, Action.CANCEL, Action.DELETE)


def person_action(text: str | None) -> Action | None:
    """The dashboard action named ``text``, or None when it names none."""
    return next((a for a in ACTIONS if a.value == text), None)


def job_actions(job: JobRecord) -> list[str]:
    """The actions that make sense for ``job`` in its state."""
    allowed = actions_for(job.state)
    return [a.value for a in ACTIONS if a in allowed]


def states_allowing(action: Action) -> tuple[JobState, ...]:
    """The states in which ``action`` applies (a bulk action only touches these)."""
    return tuple(state for state in JobState if action in actions_for(state))


def act_job(dash: Dashboard, request: Request, ctx: Context) -> Response:
    job_id = job_id_of(request.path_params["job_id"])
    action = person_action(str(request.path_params["action"]))
    assert ctx.form is not None
    if action is None:
        return dash.error(
            request, ctx, 404, "No such action", "Jobs can be retried, cancelled or deleted."
        )
    job = dash.store.job_get(job_id) if job_id is not None else None
    if job_id is None or job is None:
        shown = request.path_params["job_id"]
        return dash.error(request, ctx, 404, "No such job", f"There is no job with id {shown}.")
    if form_field(ctx.form, "confirm") != "yes":
        return dash.render(
            request,
            ctx,
            "confirm.html",
            {
                "action": action.value,
                "job": job,
                "count": 1,
                "target": f"/jobs/{job_id}/{action.value}",
                "fields": {},
                "bulk_states": [],
            },
        )
    now = datetime.now(UTC)
    try:
        if action is Action.RETRY:
            dash.store.job_retry(job_id, now=now)
            notice = "retried"
        elif action is Action.CANCEL:
            dash.store.job_cancel(job_id, now=now)
            notice = "cancelled"
        elif dash.store.job_delete(job_id):
            return dash.redirect(request, "/jobs", notice="deleted")
        else:
            raise JobNotFound(missing_job(job_id))
    except JobNotFound as exc:  # it went meanwhile
        return dash.error(request, ctx, 404, "No such job", _sentence(str(exc)))
    except CorequeueError as exc:  # its state changed meanwhile, or its unique key is taken
        title = f"Cannot {action.value} job {job_id}"
        return dash.error(request, ctx, 409, title, _sentence(str(exc)))
    return dash.redirect(request, f"/jobs/{job_id}", notice=notice)


def _sentence(text: str) -> str:
    """A refusal's text (corequeue.core.display.refusal) as a sentence on a page."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def act_bulk(dash: Dashboard, request: Request, ctx: Context) -> Response:
    assert ctx.form is not None
    action = person_action(form_field(ctx.form, "action"))
    if action is None:
        return dash.error(request, ctx, 400, "Unknown action", "Choose retry, cancel or delete.")
    filt, form, problems = parse_filter(ctx.form)
    if problems:
        return dash.error(request, ctx, 400, "Invalid filter", "; ".join(problems))
    allowed = states_allowing(action)
    states = tuple(s for s in (filt.states or allowed) if s in allowed)
    target = replace(filt, states=states)
    if form_field(ctx.form, "confirm") != "yes":
        count = dash.monitor.job_count(target) if states else 0
        fields = {k: v for k, v in form.items() if v and k != "state"}
        return dash.render(
            request,
            ctx,
            "confirm.html",
            {
                "action": action.value,
                "job": None,
                "count": count,
                "target": "/jobs/bulk",
                "fields": {**fields, "action": action.value},
                "bulk_states": [s.value for s in filt.states],
                "applies_to": states,
            },
        )
    done, skipped = _apply_many(dash, action, target) if states else (0, 0)
    return dash.render(
        request,
        ctx,
        "bulk_done.html",
        {"action": action.value, "done": done, "skipped": skipped, "back": query_string(form)},
    )


def _apply_many(dash: Dashboard, action: Action, target: JobFilter) -> tuple[int, int]:
    """Apply ``action`` to every job ``target`` matches, a batch per transaction: (done,
    skipped). A job that changed state meanwhile, or went, is skipped."""
    done = skipped = 0
    now = datetime.now(UTC)
    for ids in dash.monitor.job_ids(target):
        d, s = dash.store.job_act_many(ids, action, now=now)
        done, skipped = done + d, skipped + s
    return done, skipped
