"""The plugin's own tests run test files with pytest's ``pytester`` fixture.

``pytest_plugins`` is refused in a conftest below the top level, so pytester is loaded when this
conftest is registered (pytest_configure is replayed for conftests found during collection).

Each test writes a small application (``appjobs.py``) and test files into a temporary
directory, runs pytest on them in a subprocess (so the plugin loads through its entry point,
as it does for users) and checks the outcomes and the messages users see.
"""

from __future__ import annotations

import os
import textwrap

import pytest
import sqlalchemy as sa

from corequeue.store.engine import normalize_url

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

APP_JOBS = '''
"""The application under test in the pytester runs."""

from corequeue import DeferJob, Job, register_job

calls = []


@register_job
class Add(Job):
    def __init__(self, a, b, *, label="sum"):
        self.a, self.b, self.label = a, b, label

    def run(self):
        calls.append(("Add", self.a, self.b))
        return {self.label: self.a + self.b}


@register_job
class Boom(Job):
    def __init__(self, message):
        self.message = message

    def run(self):
        raise ValueError(self.message)


@register_job
class FailTwice(Job):
    """Fails its first two runs (counted in the file at ``path``), then succeeds."""

    def __init__(self, path):
        self.path = path

    def default_retries(self):
        return 2

    def retry_delay(self, attempt):
        return 30.0

    def run(self):
        with open(self.path, "a+") as f:
            f.seek(0)
            n = len(f.read())
            f.write("x")
        if n < 2:
            raise RuntimeError(f"attempt {n} failed")
        return n


@register_job
class AlwaysDefer(Job):
    def __init__(self, counts=False):
        self.counts = counts

    def run(self):
        calls.append(("AlwaysDefer",))
        raise DeferJob(delay=60, increment_retries=self.counts)


@register_job
class Unstorable(Job):
    def run(self):
        return object()


@register_job
class Chain(Job):
    """Enqueues an Add from inside its run()."""

    def __init__(self, a):
        self.a = a

    def run(self):
        Add(self.a, 1).run_in_worker(queue="math")
        return "chained"


class Tag:
    """Middleware: wraps results."""

    def __init__(self, run_job):
        self.run_job = run_job

    def __call__(self, job):
        return {"tagged": self.run_job(job)}
'''

INI = """
[pytest]
addopts = -p no:cacheprovider --strict-markers
filterwarnings =
    error
    ignore:The configuration option "asyncio_default_fixture_loop_scope" is unset
"""


@pytest.fixture
def app_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory holding the application's jobs module and a strict pytest.ini."""
    pytester.makepyfile(appjobs=textwrap.dedent(APP_JOBS))
    pytester.makeini(INI)
    return pytester


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A PostgreSQL URL whose user may create databases (the project's test server)."""
    url = os.environ.get("COREQUEUE_TEST_DATABASE_URL", DEFAULT_PG)
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {url} ({exc.orig}): start it or set " + (
            "COREQUEUE_TEST_DATABASE_URL"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def with_postgres(postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points the pytester subprocess at the project's PostgreSQL server."""
    monkeypatch.setenv("COREQUEUE_TEST_DATABASE_URL", postgres_admin_url)
    monkeypatch.delenv("CI", raising=False)
    return postgres_admin_url


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
