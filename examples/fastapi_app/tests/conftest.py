"""The application on the test's database: the pytest plugin's ``corequeue_store`` (a real,
empty, migrated database per test) holds the application's table too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from signups.main import build_app
from signups.models import Base


@pytest.fixture
def client(corequeue_store: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ADMIN_PASSWORD", "correct horse battery staple")
    Base.metadata.drop_all(corequeue_store.engine)
    app = build_app(corequeue_store.engine)
    with TestClient(app) as client:
        yield client
    Base.metadata.drop_all(corequeue_store.engine)


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
