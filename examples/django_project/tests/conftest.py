"""One scratch PostgreSQL database for the session, shared by Django and corequeue (as in
production: mysite/settings.py), on the server of COREQUEUE_TEST_DATABASE_URL; emptied
before each test. Without a reachable server the tests are skipped, except under CI=true."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

SERVER = os.environ.get(
    "COREQUEUE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NAME = f"cq_django_{uuid.uuid4().hex[:10]}"


def _admin(sql: str) -> None:
    engine = sa.create_engine(
        sa.make_url(SERVER).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def pytest_configure(config: pytest.Config) -> None:
    try:
        _admin(f'CREATE DATABASE "{NAME}"')
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        config.stash[SKIP] = f"no PostgreSQL at {SERVER}: {exc.orig}"
        return
    url = sa.make_url(SERVER).set(database=NAME).render_as_string(hide_password=False)
    os.environ["DATABASE_URL"] = url
    os.environ["COREQUEUE_DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    import django
    from django.core.management import call_command

    import corequeue

    django.setup()
    call_command("migrate", verbosity=0)
    corequeue.configure(url).migrate()


def pytest_unconfigure(config: pytest.Config) -> None:
    if SKIP in config.stash:
        return
    from django.db import connections

    import corequeue

    connections.close_all()
    corequeue.get_store().dispose()
    _admin(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')


SKIP = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SKIP in config.stash:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=config.stash[SKIP]))


@pytest.fixture(autouse=True)
def empty_tables() -> Iterator[None]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE orders_order, corequeue_jobs, corequeue_attempts RESTART IDENTITY CASCADE"
        )
    yield
