"""The FastAPI application: a signup enqueues its welcome mail in the request's transaction,
and the corequeue dashboard is mounted under /admin/jobs behind the application's own auth.

Run it with ``uvicorn signups.main:app`` and the worker, a separate process, with
``corequeue run`` (``[tool.corequeue] imports`` names ``signups.jobs``); both read the database
from COREQUEUE_DATABASE_URL.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations.
import os
from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.orm import Session

import corequeue
from corequeue.web import create_app
from signups.auth import admin_only
from signups.jobs import SendWelcome
from signups.models import Base, User

PLANS = {"free": 0, "pro": 10}


class Signup(BaseModel):
    email: str
    plan: str = "free"


def build_app(engine: sa.Engine | None = None) -> FastAPI:
    """The application on ``engine`` (default: corequeue's configured database's)."""
    engine = engine if engine is not None else corequeue.get_store().engine
    Base.metadata.create_all(engine)
    app = FastAPI()

    def session() -> Iterator[Session]:
        with Session(engine) as db, db.begin():  # one transaction per request
            yield db

    @app.post("/signups", status_code=201)
    def sign_up(signup: Signup, db: Annotated[Session, Depends(session)]) -> dict[str, int]:
        if db.scalar(sa.select(User.id).where(User.email == signup.email)) is not None:
            raise HTTPException(409, "already signed up")  # rolls back: no user, no job
        user = User(email=signup.email)
        db.add(user)
        db.flush()
        handle = SendWelcome(user.id).run_in_worker(connection=db)  # in this transaction
        if signup.plan not in PLANS:  # checked last on purpose: the rollback takes the job too
            raise HTTPException(422, f"unknown plan {signup.plan!r}")
        return {"user": user.id, "job": handle.id}

    hosts = os.environ.get("APP_HOSTS", "localhost,127.0.0.1,testserver").split(",")
    dashboard = create_app(corequeue.get_store(), allowed_hosts=hosts)
    app.mount("/admin/jobs", admin_only(dashboard))
    return app
