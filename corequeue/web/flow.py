"""The dashboard's flow controls: pause and resume a queue (on ``/``) or a schedule (on
``/schedules``). Every one is a POST through the dashboard's CSRF and origin checks
(``Dashboard.endpoint(..., action=True)``), refused in read-only mode."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from corequeue.store.schedules import schedule_pause
from corequeue.web.dashboard import Context, Dashboard

#: The actions, and the notice each one redirects with.
QUEUE_ACTIONS = {"pause": "queue_paused", "resume": "queue_resumed"}
SCHEDULE_ACTIONS = {"pause": "schedule_paused", "resume": "schedule_resumed"}


def _name(request: Request) -> str | None:
    name = str(request.path_params["name"])
    return name if 0 < len(name) <= 255 and name.isprintable() else None


def act_queue(dash: Dashboard, request: Request, ctx: Context) -> Response:
    name, action = _name(request), str(request.path_params["action"])
    if action not in QUEUE_ACTIONS or name is None or len(name) > 100:
        return dash.error(request, ctx, 404, "No such action", "A queue can be paused or resumed.")
    dash.store.queue_pause(name, paused=action == "pause", now=datetime.now(UTC))
    return dash.redirect(request, "/", notice=QUEUE_ACTIONS[action])


def act_schedule(dash: Dashboard, request: Request, ctx: Context) -> Response:
    name, action = _name(request), str(request.path_params["action"])
    if action not in SCHEDULE_ACTIONS or name is None:
        return dash.error(
            request, ctx, 404, "No such action", "A schedule can be paused or resumed."
        )
    if not schedule_pause(dash.store, name, paused=action == "pause"):
        return dash.error(request, ctx, 404, "No such schedule", "No schedule of that name.")
    return dash.redirect(request, "/schedules", notice=SCHEDULE_ACTIONS[action])
