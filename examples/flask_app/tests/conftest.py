"""The application on the test's database: the pytest plugin's ``corequeue_store`` (a real,
empty, migrated database per test) holds the application's table too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from notes.app import create_app
from notes.models import Base


@pytest.fixture
def client(corequeue_store: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlaskClient]:
    monkeypatch.setenv("ADMIN_PASSWORD", "correct horse battery staple")
    Base.metadata.drop_all(corequeue_store.engine)
    app = create_app(corequeue_store.engine)
    yield app.test_client()
    Base.metadata.drop_all(corequeue_store.engine)


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
