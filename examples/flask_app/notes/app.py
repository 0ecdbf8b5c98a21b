"""The Flask application: a new note enqueues its word count in the request's transaction,
and the corequeue dashboard (an ASGI app, served through a2wsgi) is mounted under /admin/jobs
behind the application's own auth.

Run it with ``flask --app notes.app run`` and the worker, a separate process, with
``corequeue run`` (``[tool.corequeue] imports`` names ``notes.jobs``); both read the database
from COREQUEUE_DATABASE_URL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from a2wsgi import ASGIMiddleware
from flask import Flask, abort, g, jsonify, request
from sqlalchemy.orm import Session
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Request

import corequeue
from corequeue.web import create_app as create_dashboard
from notes.jobs import CountWords
from notes.models import Base, Note


def is_admin(username: str | None, password: str | None) -> bool:
    """The application's own check, used by its views and in front of the dashboard."""
    expected = os.environ.get("ADMIN_PASSWORD", "")
    return bool(expected) and secrets.compare_digest(
        f"{username}:{password}".encode(), f"admin:{expected}".encode()
    )


def admin_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app behind the admin check: 401 for anyone else."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        auth = Request(environ).authorization
        if auth is None or not is_admin(auth.username, auth.password):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="admin"')])
            return [b"admins only"]
        return app(environ, start_response)

    return guarded


def create_app(engine: sa.Engine | None = None) -> Flask:
    """The application on ``engine`` (default: corequeue's configured database's)."""
    engine = engine if engine is not None else corequeue.get_store().engine
    Base.metadata.create_all(engine)
    app = Flask(__name__)

    @app.before_request
    def open_session() -> None:
        g.db = Session(engine)
        g.db.begin()  # one transaction per request

    @app.teardown_request
    def close_session(error: BaseException | None) -> None:
        db: Session = g.pop("db")
        if error is None and db.in_transaction() and not g.get("rollback"):
            db.commit()
        db.close()  # rolls back anything not committed

    @app.post("/notes")
    def add_note() -> Any:
        note = Note(text=request.json["text"])
        g.db.add(note)
        g.db.flush()
        handle = CountWords(note.id).run_in_worker(connection=g.db)  # in this transaction
        if not note.text.strip():  # checked last on purpose: the rollback takes the job too
            g.rollback = True
            abort(422, "a note needs some text")
        return jsonify(note=note.id, job=handle.id), 201

    hosts = os.environ.get("APP_HOSTS", "localhost,127.0.0.1").split(",")
    dashboard = create_dashboard(corequeue.get_store(), allowed_hosts=hosts)
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/admin/jobs": admin_only(ASGIMiddleware(dashboard))}
    )
    return app
